// A small HTTP/1.1 server on Boost.Beast: keep-alive, bounded bodies,
// bounded connections, read and response timeouts.  Routing is the
// handler's job; this layer knows nothing about the ledger.
#pragma once

#include <utility>  // before Boost.Asio: Boost 1.74 + GCC 12 + C++20
#include <boost/asio.hpp>
#include <boost/beast/http.hpp>

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "api/config.h"
#include "common/status.h"

namespace cl::api {

namespace http = boost::beast::http;
using Request = http::request<http::string_body>;
using Response = http::response<http::string_body>;
// Sends the response; callable once, from any thread.
using Respond = std::function<void(Response)>;
// Handles one request; must call respond exactly once (now or later).
using Handler = std::function<void(Request&&, Respond)>;

struct ServerOptions {
  Endpoint listen;
  size_t io_threads = 0;             // 0 = one per core
  uint64_t body_bytes_max = 8 << 20;
  uint64_t connections_max = 4096;
  uint64_t request_timeout_ms = 10000;  // to read a request, and to produce its response
  uint64_t idle_timeout_ms = 60000;     // between requests on a kept-alive connection
};

class Metrics;

// Builds an RFC 9457 problem response (application/problem+json).
Response problem_response(int status, const std::string& code, const std::string& title, const std::string& detail,
                          unsigned version, bool keep_alive);

class HttpServer {
 public:
  HttpServer(ServerOptions options, Handler handler, Metrics* metrics);
  ~HttpServer();

  // Binds and starts the I/O threads.  Status "io" if the port can't be bound.
  Status start();
  // The bound port (useful when listen.port was 0).
  uint16_t port() const { return port_; }
  // Stops accepting new connections (open ones keep being served).
  void stop_accepting();
  // Waits up to grace_ms for answers still being written, then closes every
  // connection and joins the threads.  Idempotent.
  void stop(uint64_t grace_ms = 0);

 private:
  class Session;
  void do_accept();

  ServerOptions options_;
  Handler handler_;
  Metrics* metrics_;
  // One io_context per I/O thread, each run by that thread alone; a
  // connection lives on one of them (round robin), so its handlers never
  // hop threads.  One io_context shared by all threads made every
  // completion wake another thread: measured 6 context switches per
  // single-op request.  The acceptor lives on the first.
  std::vector<std::unique_ptr<boost::asio::io_context>> iocs_;
  std::vector<boost::asio::executor_work_guard<boost::asio::io_context::executor_type>> work_;
  size_t next_ioc_ = 0;  // acceptor's thread only
  boost::asio::ip::tcp::acceptor acceptor_;
  std::vector<std::thread> threads_;
  std::shared_ptr<std::atomic<uint64_t>> connections_ = std::make_shared<std::atomic<uint64_t>>(0);
  uint16_t port_ = 0;
  std::atomic<bool> accepting_{true};
  std::atomic<bool> stopped_{false};
  std::atomic<int64_t> in_flight_{0};  // requests handed to the handler, answer not yet written
};

}  // namespace cl::api
