// Real `cityledger node` processes on loopback for black-box tests: writes a
// config, genesis and node key into a temporary directory, starts the binary,
// waits until /readyz answers, and stops it with SIGTERM or SIGKILL.
#pragma once

#include <doctest/doctest.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <random>
#include <set>
#include <string>
#include <thread>

#include "api/http_client.h"
#include "tests/unit/fixture.h"

namespace cl::test {

// A loopback TCP port that was free a moment ago, chosen below Linux's
// ephemeral range (32768-60999): a port the kernel hands out for outgoing
// connections (of this test's nodes, or of tests running in parallel) can
// be taken between this check and the node's bind.
inline uint16_t free_port() {
  static std::mt19937 rng(static_cast<uint32_t>(::getpid()) * 2654435761u ^
                          static_cast<uint32_t>(std::chrono::steady_clock::now().time_since_epoch().count()));
  static std::set<uint16_t> given;
  for (int attempt = 0; attempt < 1000; ++attempt) {
#ifndef CL_PORT_BASE
#define CL_PORT_BASE 20000
#define CL_PORT_SPAN 12000
#endif
    uint16_t port = static_cast<uint16_t>(CL_PORT_BASE + rng() % CL_PORT_SPAN);
    // A port handed out earlier may not be bound yet (a cluster picks all
    // its ports before starting its nodes): never hand it out twice.
    if (given.count(port)) continue;
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    REQUIRE(fd >= 0);
    int one = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(port);
    bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
    ::close(fd);
    if (ok) {
      given.insert(port);
      return port;
    }
  }
  FAIL("no free loopback port in " << CL_PORT_BASE << "-" << CL_PORT_BASE + CL_PORT_SPAN - 1);
  return 0;
}

inline void write_text(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
}

// One node of the test chain (test_genesis(): chain "msk-demo", the
// fixture's registrar/issuer keys, node 1 with key seed 0x04).
class NodeProcess {
 public:
  // "limits_json" is an optional JSON object for the config's "limits".
  explicit NodeProcess(std::string limits_json = "") : limits_json_(std::move(limits_json)) {
    port_ = free_port();
    write_text(dir_.sub("genesis.json"), test_genesis_json());
    std::string key = dir_.sub("node1.key");
    write_text(key, key_file_text(authorities().node));
    ::chmod(key.c_str(), 0600);
    std::string cfg = "{\"node_id\":1,\"data_dir\":\"data\",\"key_file\":\"node1.key\",\"genesis\":\"genesis.json\","
                      "\"api\":\"127.0.0.1:" + std::to_string(port_) + "\",\"raft\":\"127.0.0.1:" +
                      std::to_string(free_port()) + "\",\"peers\":[{\"id\":1,\"raft\":\"127.0.0.1:1\",\"api\":\"127.0.0.1:" +
                      std::to_string(port_) + "\"}]" + (limits_json_.empty() ? "" : ",\"limits\":" + limits_json_) + "}";
    write_text(config_path(), cfg);
  }
  ~NodeProcess() {
    if (pid_ > 0) kill_hard();
  }
  NodeProcess(const NodeProcess&) = delete;
  NodeProcess& operator=(const NodeProcess&) = delete;

  std::string config_path() const { return dir_.sub("node.json"); }
  std::string log_path() const { return dir_.sub("node.log"); }
  const TempDir& dir() const { return dir_; }
  uint16_t port() const { return port_; }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  pid_t pid() const { return pid_; }

  // Starts the node and waits (up to 20 s) until /readyz answers 200.
  void start() {
    REQUIRE(pid_ <= 0);
    pid_ = ::fork();
    REQUIRE(pid_ >= 0);
    if (pid_ == 0) {
      int fd = ::open(log_path().c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
      ::dup2(fd, 2);
      ::dup2(fd, 1);
      ::execl(CL_CITYLEDGER_BIN, CL_CITYLEDGER_BIN, "node", "--config", config_path().c_str(), nullptr);
      ::_exit(127);
    }
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (std::chrono::steady_clock::now() < deadline) {
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        FAIL("node exited during start; log:\n" << read_file(log_path()));
      }
      api::HttpClient c("127.0.0.1", port_, 1000);
      auto r = c.request("GET", "/readyz");
      if (r && r->status == 200) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    FAIL("node not ready within 20 s; log:\n" << read_file(log_path()));
  }

  // SIGTERM, then waits for exit; returns the exit status (as from waitpid).
  int stop() {
    REQUIRE(pid_ > 0);
    ::kill(pid_, SIGTERM);
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
    return status;
  }

  // SIGKILL, then reaps the process.
  void kill_hard() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGKILL);
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
  }

 private:
  TempDir dir_;
  std::string limits_json_;
  uint16_t port_ = 0;
  pid_t pid_ = -1;
};

}  // namespace cl::test
