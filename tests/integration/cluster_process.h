// A cluster of real `cityledger node` processes on loopback for black-box
// tests (DESIGN §7, §9, §10): N nodes, each with its own data dir, config,
// node key (mode 0600) and one shared genesis listing every node.  Nodes are
// numbered 1..N; each can be started, stopped (SIGTERM), killed (SIGKILL),
// paused (SIGSTOP) and resumed (SIGCONT) independently.
//
// Every wait here is bounded; on timeout it fails the test with the state
// it saw and the last lines of every node's log.
#pragma once

#include <doctest/doctest.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <map>
#include <mutex>
#include <memory>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "api/http_client.h"
#include "common/hex.h"
#include "tests/integration/node_process.h"  // free_port(), write_text()
#include "tests/unit/fixture.h"
#include "wallet/jcs.h"

namespace cl::test {

// Node keys of the cluster's genesis: node 1 is the fixture's node key (seed
// 0x04); nodes 2..5 use seeds 0x06, 0x07, 0x08, 0x09.
inline KeyPair cluster_node_key(uint64_t id) {
  static const uint8_t kSeeds[] = {0x04, 0x06, 0x07, 0x08, 0x09};
  REQUIRE(id >= 1);
  REQUIRE(id <= 5);
  return seed_key(kSeeds[id - 1]);
}

// Genesis of the test chain ("msk-demo", the fixture's issuer and
// registrars) with nodes 1..n.
inline std::string cluster_genesis_json(size_t n) {
  const auto& a = authorities();
  std::string nodes;
  for (uint64_t id = 1; id <= n; ++id) {
    if (id > 1) nodes += ",";
    nodes += "{\"id\":" + std::to_string(id) + ",\"key\":\"" + hex_encode(cluster_node_key(id).public_key) + "\"}";
  }
  return "{\"chain\":\"msk-demo\",\"issuer\":\"" + hex_encode(a.issuer.public_key) + "\",\"registrars\":[\"" +
         hex_encode(a.registrar.public_key) + "\",\"" + hex_encode(a.registrar2.public_key) + "\"],\"nodes\":[" +
         nodes + "]}";
}

// What GET /v1/cluster said.
struct ClusterView {
  uint64_t node = 0;
  std::string role;
  uint64_t term = 0;
  uint64_t leader = 0;  // 0: none known
  uint64_t commit_index = 0;
  uint64_t applied_index = 0;
  Json raw;
};

inline std::string last_lines(const std::string& text, size_t n) {
  size_t pos = text.size();
  for (size_t k = 0; k <= n && pos > 0; ++k) {
    pos = text.rfind('\n', pos - 1);
    if (pos == std::string::npos) return text;
    if (k == n) return text.substr(pos + 1);
  }
  return text.substr(pos == std::string::npos ? 0 : pos);
}

// A test-owned TCP proxy for one directed Raft link (node i dials node j
// through it).  cut(true) severs its connections and refuses new ones until
// cut(false): a network partition without touching the processes.
class TcpProxy {
 public:
  explicit TcpProxy(uint16_t target_port) : target_port_(target_port) {
    listen_fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    REQUIRE(listen_fd_ >= 0);
    int one = 1;
    ::setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    REQUIRE(::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0);
    REQUIRE(::listen(listen_fd_, 64) == 0);
    socklen_t len = sizeof(addr);
    REQUIRE(::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len) == 0);
    port_ = ntohs(addr.sin_port);
    acceptor_ = std::thread([this] { accept_loop(); });
  }
  ~TcpProxy() {
    stopping_ = true;
    acceptor_.join();
    cut(true);
    std::vector<std::thread> pumps;
    {
      std::lock_guard<std::mutex> lock(mu_);
      pumps.swap(pumps_);
    }
    for (auto& t : pumps) t.join();
    ::close(listen_fd_);
  }
  TcpProxy(const TcpProxy&) = delete;
  TcpProxy& operator=(const TcpProxy&) = delete;

  uint16_t port() const { return port_; }
  bool is_cut() const { return cut_.load(); }

  void cut(bool on) {
    cut_ = on;
    if (!on) return;
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& c : conns_) {
      ::shutdown(c->a, SHUT_RDWR);
      ::shutdown(c->b, SHUT_RDWR);
    }
  }

 private:
  struct Conn {
    int a = -1, b = -1;
    std::atomic<int> pumps_left{2};
  };

  void accept_loop() {
    while (!stopping_) {
      pollfd p{listen_fd_, POLLIN, 0};
      if (::poll(&p, 1, 20) <= 0) continue;
      int a = ::accept(listen_fd_, nullptr, nullptr);
      if (a < 0) continue;
      if (cut_) {
        ::close(a);
        continue;
      }
      int b = ::socket(AF_INET, SOCK_STREAM, 0);
      sockaddr_in to{};
      to.sin_family = AF_INET;
      to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      to.sin_port = htons(target_port_);
      if (b < 0 || ::connect(b, reinterpret_cast<sockaddr*>(&to), sizeof(to)) != 0) {
        if (b >= 0) ::close(b);
        ::close(a);
        continue;
      }
      int one = 1;
      ::setsockopt(a, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
      ::setsockopt(b, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
      auto c = std::make_shared<Conn>();
      c->a = a;
      c->b = b;
      std::lock_guard<std::mutex> lock(mu_);
      if (cut_) {  // cut while connecting
        ::close(a);
        ::close(b);
        continue;
      }
      conns_.push_back(c);
      pumps_.emplace_back([this, c] { pump(c, c->a, c->b); });
      pumps_.emplace_back([this, c] { pump(c, c->b, c->a); });
    }
  }

  // Copies from -> to until either side ends, then ends both.
  void pump(const std::shared_ptr<Conn>& c, int from, int to) {
    char buf[65536];
    while (true) {
      ssize_t n = ::read(from, buf, sizeof(buf));
      if (n <= 0) break;
      ssize_t off = 0;
      while (off < n) {
        ssize_t w = ::send(to, buf + off, static_cast<size_t>(n - off), MSG_NOSIGNAL);
        if (w <= 0) break;
        off += w;
      }
      if (off < n) break;
    }
    ::shutdown(from, SHUT_RDWR);
    ::shutdown(to, SHUT_RDWR);
    if (--c->pumps_left == 0) {
      std::lock_guard<std::mutex> lock(mu_);
      ::close(c->a);
      ::close(c->b);
      conns_.erase(std::remove(conns_.begin(), conns_.end(), c), conns_.end());
    }
  }

  uint16_t target_port_;
  uint16_t port_ = 0;
  int listen_fd_ = -1;
  std::atomic<bool> cut_{false}, stopping_{false};
  std::thread acceptor_;
  std::mutex mu_;
  std::vector<std::shared_ptr<Conn>> conns_;  // guarded by mu_
  std::vector<std::thread> pumps_;            // guarded by mu_
};

struct ClusterOptions {
  size_t nodes = 3;
  std::string limits_json;    // optional JSON object for every node's config "limits"
  bool proxied_raft = false;  // route every Raft link through a TcpProxy (for partition())
};

class Cluster {
 public:
  explicit Cluster(size_t n = 3, std::string limits_json = "") : Cluster(ClusterOptions{n, std::move(limits_json)}) {}
  explicit Cluster(ClusterOptions options) : n_(options.nodes) {
    const size_t n = n_;
    const std::string& limits_json = options.limits_json;
    REQUIRE(n >= 1);
    REQUIRE(n <= 5);
    write_text(dir_.sub("genesis.json"), cluster_genesis_json(n));
    nodes_.resize(n + 1);
    for (uint64_t id = 1; id <= n; ++id) {
      nodes_[id].api_port = free_port();
      nodes_[id].raft_port = free_port();
    }
    if (options.proxied_raft)
      for (uint64_t from = 1; from <= n; ++from)
        for (uint64_t to = 1; to <= n; ++to)
          if (from != to) proxies_[{from, to}] = std::make_unique<TcpProxy>(nodes_[to].raft_port);
    for (uint64_t id = 1; id <= n; ++id) {
      // Node "id" dials peer p at p's raft port, or through the id → p proxy.
      std::string peers = "[";
      for (uint64_t p = 1; p <= n; ++p) {
        if (p > 1) peers += ",";
        uint16_t raft = nodes_[p].raft_port;
        auto proxy = proxies_.find({id, p});
        if (proxy != proxies_.end()) raft = proxy->second->port();
        peers += "{\"id\":" + std::to_string(p) + ",\"raft\":\"127.0.0.1:" + std::to_string(raft) +
                 "\",\"api\":\"127.0.0.1:" + std::to_string(nodes_[p].api_port) + "\"}";
      }
      peers += "]";
      std::string name = "node" + std::to_string(id);
      std::string key = dir_.sub(name + ".key");
      write_text(key, key_file_text(cluster_node_key(id)));
      ::chmod(key.c_str(), 0600);
      std::string cfg = "{\"node_id\":" + std::to_string(id) + ",\"data_dir\":\"" + name + "-data\",\"key_file\":\"" +
                        name + ".key\",\"genesis\":\"genesis.json\",\"api\":\"127.0.0.1:" +
                        std::to_string(nodes_[id].api_port) + "\",\"raft\":\"127.0.0.1:" +
                        std::to_string(nodes_[id].raft_port) + "\",\"peers\":" + peers +
                        (limits_json.empty() ? "" : ",\"limits\":" + limits_json) + "}";
      write_text(config_path(id), cfg);
    }
  }
  ~Cluster() {
    for (uint64_t id = 1; id <= n_; ++id) kill_hard(id);
  }
  Cluster(const Cluster&) = delete;
  Cluster& operator=(const Cluster&) = delete;

  size_t size() const { return n_; }
  std::vector<uint64_t> ids() const {
    std::vector<uint64_t> out;
    for (uint64_t id = 1; id <= n_; ++id) out.push_back(id);
    return out;
  }
  std::string config_path(uint64_t id) const { return dir_.sub("node" + std::to_string(id) + ".json"); }
  std::string log_path(uint64_t id) const { return dir_.sub("node" + std::to_string(id) + ".log"); }
  uint16_t api_port(uint64_t id) const { return node(id).api_port; }
  std::string api_addr(uint64_t id) const { return "127.0.0.1:" + std::to_string(api_port(id)); }
  std::string url(uint64_t id) const { return "http://" + api_addr(id); }
  bool running(uint64_t id) const { return node(id).pid > 0; }
  bool paused(uint64_t id) const { return node(id).paused; }
  // Running and not paused: expected to answer.
  bool live(uint64_t id) const { return running(id) && !paused(id); }
  pid_t pid(uint64_t id) const { return node(id).pid; }

  // Node id whose API listens on "port" (0 if none).
  uint64_t id_of_port(uint16_t port) const {
    for (uint64_t id = 1; id <= n_; ++id)
      if (nodes_[id].api_port == port) return id;
    return 0;
  }

  // Spawns node "id" and waits (up to 15 s) until its API answers /healthz.
  // It is not ready (/readyz) until a leader is known: see wait_for_leader().
  void start(uint64_t id) {
    Node& nd = node(id);
    REQUIRE_MESSAGE(nd.pid <= 0, "node " << id << " is already running");
    const std::string log = log_path(id), cfg = config_path(id);  // nothing allocates after fork()
    pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
      ::dup2(fd, 2);
      ::dup2(fd, 1);
      ::execl(CL_CITYLEDGER_BIN, CL_CITYLEDGER_BIN, "node", "--config", cfg.c_str(), nullptr);
      ::_exit(127);
    }
    nd.pid = pid;
    nd.paused = false;
    ++nd.starts;
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(15);
    while (std::chrono::steady_clock::now() < deadline) {
      int status = 0;
      if (::waitpid(pid, &status, WNOHANG) == pid) {
        nd.pid = -1;
        FAIL("node " << id << " exited during start (status " << status << "); log:\n"
                     << last_lines(read_file(log_path(id)), 40));
      }
      api::HttpClient c("127.0.0.1", nd.api_port, 500);
      auto r = c.request("GET", "/healthz");
      if (r && r->status == 200) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    FAIL("node " << id << " did not answer /healthz within 15 s\n" << logs());
  }

  void start_all() {
    for (uint64_t id = 1; id <= n_; ++id) start(id);
  }

  // SIGKILL, then reaps.  No-op if not running.
  void kill_hard(uint64_t id) {
    Node& nd = node(id);
    if (nd.pid <= 0) return;
    ::kill(nd.pid, SIGKILL);
    int status = 0;
    ::waitpid(nd.pid, &status, 0);
    nd.pid = -1;
    nd.paused = false;
  }

  // SIGTERM, then waits (up to 30 s, then SIGKILL) for a clean exit.
  // Returns the waitpid status.
  int stop(uint64_t id) {
    Node& nd = node(id);
    REQUIRE_MESSAGE(nd.pid > 0, "node " << id << " is not running");
    if (nd.paused) resume(id);
    ::kill(nd.pid, SIGTERM);
    int status = 0;
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (true) {
      if (::waitpid(nd.pid, &status, WNOHANG) == nd.pid) break;
      if (std::chrono::steady_clock::now() > deadline) {
        ::kill(nd.pid, SIGKILL);
        ::waitpid(nd.pid, &status, 0);
        nd.pid = -1;
        FAIL("node " << id << " did not exit within 30 s of SIGTERM\n" << logs());
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    nd.pid = -1;
    return status;
  }

  void restart(uint64_t id) {
    if (running(id)) stop(id);
    start(id);
  }

  // SIGSTOP / SIGCONT: the process keeps its sockets but does nothing.
  void pause(uint64_t id) {
    Node& nd = node(id);
    REQUIRE(nd.pid > 0);
    REQUIRE(::kill(nd.pid, SIGSTOP) == 0);
    nd.paused = true;
    // kill() only queues the stop: wait until every thread has stopped, so
    // nothing the test does next can still be answered by this node.
    auto t0 = std::chrono::steady_clock::now();
    auto deadline = t0 + std::chrono::seconds(5);
    while (!all_threads_stopped(nd.pid)) {
      REQUIRE_MESSAGE(std::chrono::steady_clock::now() < deadline, "node " << id << " did not stop within 5 s of SIGSTOP");
      std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
    double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    if (ms > 0.5) MESSAGE("node " << id << " took " << ms << " ms to stop after SIGSTOP");
  }
  // True if every thread of "pid" is in the stopped state ('T' in /proc).
  static bool all_threads_stopped(pid_t pid) {
    std::error_code ec;
    const std::string task_dir = "/proc/" + std::to_string(pid) + "/task";
    size_t threads = 0;
    for (const auto& t : std::filesystem::directory_iterator(task_dir, ec)) {
      std::string stat = read_file(t.path().string() + "/stat");
      size_t close = stat.rfind(')');  // "pid (comm) S ...": comm may contain spaces
      if (close == std::string::npos || close + 2 >= stat.size()) return false;
      if (stat[close + 2] != 'T' && stat[close + 2] != 't') return false;
      ++threads;
    }
    return !ec && threads > 0;
  }
  void resume(uint64_t id) {
    Node& nd = node(id);
    REQUIRE(nd.pid > 0);
    REQUIRE(::kill(nd.pid, SIGCONT) == 0);
    nd.paused = false;
  }

  // GET /v1/cluster on node "id" (nullopt if it does not answer 200 JSON).
  std::optional<ClusterView> view(uint64_t id, uint64_t timeout_ms = 1000) const {
    api::HttpClient c("127.0.0.1", api_port(id), timeout_ms);
    auto r = c.request("GET", "/v1/cluster");
    if (!r || r->status != 200) return std::nullopt;
    Json j = Json::parse(r->body, nullptr, false);
    if (!j.is_object()) return std::nullopt;
    ClusterView v;
    v.raw = j;
    try {
      v.node = j.at("node").get<uint64_t>();
      v.role = j.at("role").get<std::string>();
      v.term = j.at("term").get<uint64_t>();
      v.leader = j.at("leader").is_null() ? 0 : j.at("leader").get<uint64_t>();
      v.commit_index = j.at("commit_index").get<uint64_t>();
      v.applied_index = j.at("applied_index").get<uint64_t>();
    } catch (const std::exception&) {
      return std::nullopt;
    }
    return v;
  }

  // The leader every live node (of "among"; empty: all) agrees on right
  // now, or 0: exactly one of them says role "leader", and every one of them
  // (itself included) names it.  Two leaders in one term is a safety
  // violation and fails the test.
  uint64_t agreed_leader(std::string* why = nullptr, const std::vector<uint64_t>& among = {}) const {
    std::map<uint64_t, ClusterView> views;
    std::ostringstream seen;
    for (uint64_t id = 1; id <= n_; ++id) {
      if (!live(id)) continue;
      if (!among.empty() && std::find(among.begin(), among.end(), id) == among.end()) continue;
      auto v = view(id);
      if (!v) {
        seen << " node " << id << ": no answer;";
        if (why) *why = seen.str();
        return 0;
      }
      seen << " node " << id << ": " << v->role << " term " << v->term << " leader " << v->leader << ";";
      views[id] = *v;
    }
    std::map<uint64_t, uint64_t> leader_of_term;
    uint64_t leader = 0;
    int leaders = 0;
    for (const auto& [id, v] : views) {
      if (v.role != "leader") continue;
      auto [it, fresh] = leader_of_term.emplace(v.term, id);
      REQUIRE_MESSAGE(fresh, "two leaders in term " << v.term << ": nodes " << it->second << " and " << id << "\n"
                                                      << logs());
      leader = id;
      ++leaders;
    }
    if (why) *why = seen.str();
    if (leaders != 1) return 0;
    for (const auto& [id, v] : views)
      if (v.leader != leader) return 0;
    return leader;
  }

  // Waits until the live nodes agree on one leader; fails after "timeout".
  uint64_t wait_for_leader(std::chrono::milliseconds timeout = std::chrono::seconds(10),
                           const std::vector<uint64_t>& among = {}) const {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    std::string why;
    while (std::chrono::steady_clock::now() < deadline) {
      uint64_t l = agreed_leader(&why, among);
      if (l) return l;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    FAIL("no agreed leader within " << timeout.count() << " ms; last seen:" << why << "\n" << logs());
    return 0;
  }

  std::string leader_url(std::chrono::milliseconds timeout = std::chrono::seconds(10)) const {
    return url(wait_for_leader(timeout));
  }

  // Waits until every live node reports the same applied_index, equal to
  // its commit_index and to the leader's commit_index, with no op in flight
  // (two equal readings 50 ms apart).  Returns that index.
  uint64_t wait_converged(std::chrono::milliseconds timeout = std::chrono::seconds(30)) const {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    std::string seen;
    uint64_t previous = 0;
    bool have_previous = false;
    while (std::chrono::steady_clock::now() < deadline) {
      std::ostringstream s;
      std::optional<uint64_t> applied;
      bool same = true;
      for (uint64_t id = 1; id <= n_ && same; ++id) {
        if (!live(id)) continue;
        auto v = view(id);
        if (!v) {
          s << " node " << id << ": no answer;";
          same = false;
          break;
        }
        s << " node " << id << ": " << v->role << " commit " << v->commit_index << " applied " << v->applied_index
          << ";";
        if (v->applied_index != v->commit_index || (applied && *applied != v->applied_index)) same = false;
        applied = v->applied_index;
      }
      seen = s.str();
      if (same && applied) {
        if (have_previous && previous == *applied) return *applied;
        previous = *applied;
        have_previous = true;
      } else {
        have_previous = false;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    FAIL("replicas did not converge within " << timeout.count() << " ms; last seen:" << seen << "\n" << logs());
    return 0;
  }

  // Partitions the Raft network (proxied_raft only): nodes in "side" and
  // the others can no longer reach each other, in either direction.
  void partition(const std::vector<uint64_t>& side) {
    REQUIRE_MESSAGE(!proxies_.empty(), "partition() needs ClusterOptions::proxied_raft");
    auto in = [&](uint64_t id) { return std::find(side.begin(), side.end(), id) != side.end(); };
    for (auto& [link, proxy] : proxies_) proxy->cut(in(link.first) != in(link.second));
  }
  void heal() {
    for (auto& [link, proxy] : proxies_) proxy->cut(false);
  }

  // The last "lines" lines of every node's log.
  std::string logs(size_t lines = 25) const {
    std::string out;
    for (uint64_t id = 1; id <= n_; ++id) {
      out += "----- node " + std::to_string(id) + " (" + (running(id) ? (paused(id) ? "paused" : "running") : "down") +
             ", api " + api_addr(id) + ") log tail -----\n";
      out += last_lines(read_file(log_path(id)), lines);
      if (!out.empty() && out.back() != '\n') out += '\n';
    }
    return out;
  }

 private:
  struct Node {
    uint16_t api_port = 0;
    uint16_t raft_port = 0;
    pid_t pid = -1;
    bool paused = false;
    int starts = 0;
  };
  // Called from client threads too: no doctest assertion here.
  Node& node(uint64_t id) {
    if (id < 1 || id > n_) throw std::out_of_range("no node " + std::to_string(id));
    return nodes_[id];
  }
  const Node& node(uint64_t id) const {
    if (id < 1 || id > n_) throw std::out_of_range("no node " + std::to_string(id));
    return nodes_[id];
  }

  TempDir dir_;
  size_t n_;
  std::vector<Node> nodes_;
  std::map<std::pair<uint64_t, uint64_t>, std::unique_ptr<TcpProxy>> proxies_;  // (from, to)
};

}  // namespace cl::test
