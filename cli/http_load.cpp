#include "cli/http_load.h"

#include <utility>  // before Boost.Asio: Boost 1.74 + GCC 12 + C++20
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <atomic>
#include <chrono>
#include <iostream>
#include <thread>

namespace cl::cli {
namespace {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = net::ip::tcp;
using Clock = std::chrono::steady_clock;

Clock::duration to_duration(double seconds) {
  return std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
}

// One keep-alive connection working through the requests of its queue.
class Conn : public std::enable_shared_from_this<Conn> {
 public:
  Conn(net::io_context& ioc, tcp::endpoint ep, std::shared_ptr<LoadQueue> queue, Clock::time_point start,
       const LoadPlan& plan, const LoadDone& done, Clock::time_point* last_answer)
      : socket_(ioc), ep_(ep), queue_(std::move(queue)), start_(start), plan_(plan), timer_(ioc), done_(done),
        last_answer_(last_answer) {}

  void run() {
    socket_.async_connect(ep_, [self = shared_from_this()](beast::error_code ec) {
      if (ec) return self->fail();
      self->socket_.set_option(tcp::no_delay(true));
      self->next();
    });
  }

 private:
  void next() {
    if (plan_.send_until_s > 0 && Clock::now() >= start_ + to_duration(plan_.send_until_s)) return;
    cur_ = queue_->pull();
    if (!cur_) return;
    intended_ = plan_.paced ? start_ + to_duration(cur_->due_s) : Clock::now();
    if (intended_ > Clock::now()) {
      timer_.expires_at(intended_);
      timer_.async_wait([self = shared_from_this()](beast::error_code) { self->send(); });
    } else {
      send();
    }
  }

  void send() {
    if (!plan_.paced) intended_ = Clock::now();
    net::async_write(socket_, net::buffer(cur_->bytes), [self = shared_from_this()](beast::error_code ec, size_t) {
      if (ec) return self->fail();
      self->res_ = {};
      http::async_read(self->socket_, self->buffer_, self->res_, [self](beast::error_code rec, size_t) {
        if (rec) return self->fail();
        auto now = Clock::now();
        *self->last_answer_ = std::max(*self->last_answer_, now);
        self->done_(*self->cur_, self->res_.result_int(), self->res_.body(),
                    std::chrono::duration<double, std::milli>(now - self->intended_).count());
        self->next();
      });
    });
  }

  // The request in flight (if any) failed; this connection stops.  Requests
  // left in its queue stay there (LoadQueue::unsent) with the queue marked.
  void fail() {
    if (cur_) done_(*cur_, kLoadIoError, std::string(), 0);
    cur_ = nullptr;
    queue_->failed = true;
  }

  tcp::socket socket_;
  tcp::endpoint ep_;
  std::shared_ptr<LoadQueue> queue_;
  Clock::time_point start_;
  const LoadPlan& plan_;
  net::steady_timer timer_;
  const LoadDone& done_;
  Clock::time_point* last_answer_;
  const LoadRequest* cur_ = nullptr;
  Clock::time_point intended_;
  beast::flat_buffer buffer_;
  http::response<http::string_body> res_;
};

std::optional<Json> get_json(const std::string& host, uint16_t port, const std::string& target) {
  api::HttpClient c(host, port, 2000);
  auto r = c.request("GET", target);
  if (!r || r->status != 200) return std::nullopt;
  auto doc = parse_json_strict(r->body);
  if (!doc || !doc->is_object()) return std::nullopt;
  return *doc;
}

}  // namespace

std::string post_request_bytes(const std::string& host, const std::string& target, const std::string& body) {
  return "POST " + target + " HTTP/1.1\r\nHost: " + host + "\r\nContent-Type: application/json\r\nContent-Length: " +
         std::to_string(body.size()) + "\r\n\r\n" + body;
}

Result<LoadTiming> run_http_load(const api::Url& url, const LoadPlan& plan, const LoadDone& done) {
  net::io_context ioc;
  tcp::resolver resolver(ioc);
  beast::error_code ec;
  auto resolved = resolver.resolve(url.host, std::to_string(url.port), ec);
  if (ec || resolved.empty()) return Status::error("io", "resolve " + url.host + ": " + ec.message());
  tcp::endpoint ep = *resolved.begin();
  auto start = Clock::now() + std::chrono::milliseconds(20);
  Clock::time_point last_answer = start;
  for (const auto& q : plan.queues) std::make_shared<Conn>(ioc, ep, q, start, plan, done, &last_answer)->run();
  auto t0 = Clock::now();
  ioc.run();
  LoadTiming t;
  t.run_seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  t.last_answer_s = std::max(0.0, std::chrono::duration<double>(last_answer - start).count());
  return t;
}

Result<BenchTarget> find_bench_target(const std::string& node_url, const std::string& who) {
  auto url = api::parse_url(node_url);
  if (!url) return url.status();
  auto cp = get_json(url->host, url->port, "/v1/checkpoint");
  if (!cp || !(*cp)["chain"].is_string())
    return Status::error("io", "node " + node_url + " is not answering /v1/checkpoint");
  BenchTarget t{*url, "http://" + url->host + ":" + std::to_string(url->port), (*cp)["chain"].get<std::string>()};
  // Against a cluster, drive the leader (followers answer writes with 307).
  auto doc = get_json(url->host, url->port, "/v1/cluster");
  if (doc && (*doc)["role"] != "leader" && (*doc)["leader"].is_number() && (*doc)["peers"].is_array()) {
    for (const auto& p : (*doc)["peers"]) {
      if (p["id"] != (*doc)["leader"] || !p["api"].is_string()) continue;
      auto leader = api::parse_url("http://" + p["api"].get<std::string>());
      if (!leader) continue;
      std::cerr << who << ": node " << node_url << " is a follower; driving the leader at "
                << p["api"].get<std::string>() << "\n";
      t.url = *leader;
      t.base = "http://" + p["api"].get<std::string>();
    }
  }
  return t;
}

Status submit_batches(const api::Url& url, const std::vector<std::string>& envs, size_t chunk, size_t connections) {
  std::atomic<size_t> next{0};
  std::vector<Status> results(connections);
  std::vector<std::thread> pool;
  for (size_t t = 0; t < connections; ++t) {
    pool.emplace_back([&, t] {
      api::HttpClient client(url.host, url.port, 120000);
      for (size_t i = next.fetch_add(chunk); i < envs.size(); i = next.fetch_add(chunk)) {
        std::string body = "[";
        for (size_t k = i; k < std::min(envs.size(), i + chunk); ++k) body += (k > i ? "," : "") + envs[k];
        auto r = client.request("POST", "/v1/ops/batch", body + "]");
        if (!r) {
          results[t] = r.status();
          return;
        }
        if (r->status != 200) {
          results[t] = Status::error("setup", "batch answered " + std::to_string(r->status) + ": " + r->body);
          return;
        }
        auto doc = parse_json_strict(r->body);
        if (!doc || !(*doc)["results"].is_array()) {
          results[t] = Status::error("setup", "bad batch reply");
          return;
        }
        for (const auto& x : (*doc)["results"]) {
          if (x.value("result", std::string()) != "ok") {
            results[t] = Status::error("setup", "op rejected: " + x.dump());
            return;
          }
        }
      }
    });
  }
  for (auto& th : pool) th.join();
  for (const auto& s : results)
    if (!s) return s;
  return Status::ok();
}

double settle_replicas(const api::Url& leader) {
  auto start = Clock::now();
  auto elapsed_ms = [&] { return std::chrono::duration<double, std::milli>(Clock::now() - start).count(); };
  while (elapsed_ms() < 30000) {
    auto lead = get_json(leader.host, leader.port, "/v1/cluster");
    if (!lead || !(*lead)["commit_index"].is_number_unsigned()) return elapsed_ms();
    uint64_t commit = (*lead)["commit_index"].get<uint64_t>();
    bool settled = true;
    for (const auto& p : (*lead)["peers"]) {
      auto u = api::parse_url("http://" + p.value("api", std::string()));
      if (!u) continue;
      auto st = get_json(u->host, u->port, "/v1/cluster");
      if (st && (*st)["applied_index"].is_number_unsigned() && (*st)["applied_index"].get<uint64_t>() < commit)
        settled = false;
    }
    if (settled) return elapsed_ms();
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  std::cerr << "bench: warning: replicas still applying after 30 s\n";
  return elapsed_ms();
}

}  // namespace cl::cli
