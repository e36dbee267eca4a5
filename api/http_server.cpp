#include "api/http_server.h"

#include <boost/beast/core.hpp>

#include <pthread.h>

#include <future>

#include "api/metrics.h"
#include "wallet/jcs.h"

namespace cl::api {

namespace beast = boost::beast;
namespace net = boost::asio;
using tcp = net::ip::tcp;

Response problem_response(int status, const std::string& code, const std::string& title, const std::string& detail,
                          unsigned version, bool keep_alive) {
  Response res{static_cast<http::status>(status), version};
  res.set(http::field::content_type, "application/problem+json");
  Json body = {{"type", "https://cityledger.example/problems/" + code},
               {"title", title},
               {"status", status},
               {"detail", detail},
               {"code", code}};
  res.body() = body.dump(-1, ' ', false, Json::error_handler_t::replace);
  res.keep_alive(keep_alive);
  res.prepare_payload();
  return res;
}

// One connection: read a request, hand it to the handler, write the
// response, repeat while keep-alive.  All socket work runs on the session's
// io_context (run by one thread); Respond may be called from any thread.
class HttpServer::Session : public std::enable_shared_from_this<HttpServer::Session> {
 public:
  Session(tcp::socket socket, HttpServer* server)
      : stream_(std::move(socket)), server_(server), timer_(stream_.get_executor()),
        connections_(server->connections_) {
    connections_->fetch_add(1);
  }
  ~Session() {
    if (counted_) server_->in_flight_.fetch_sub(1);
    uint64_t now = connections_->fetch_sub(1) - 1;
    if (server_->metrics_) server_->metrics_->set_connections(now);
  }

  void run() {
    net::dispatch(stream_.get_executor(), [self = shared_from_this()] { self->do_read(); });
  }

  // Refuses the connection with 503 (too many connections) and closes it.
  void refuse() {
    net::dispatch(stream_.get_executor(), [self = shared_from_this()] {
      self->write(problem_response(503, "overloaded", "Too many connections",
                                   "the node has reached its connection limit; retry later", 11, false),
                  /*retry_after=*/true);
    });
  }

 private:
  void do_read() {
    parser_.emplace();
    parser_->body_limit(server_->options_.body_bytes_max);
    parser_->header_limit(16 * 1024);
    stream_.expires_after(std::chrono::milliseconds(first_ ? server_->options_.request_timeout_ms
                                                           : server_->options_.idle_timeout_ms));
    first_ = false;
    // Header first, so that "Expect: 100-continue" (RFC 9110 §10.1.1) can be
    // answered before the client sends its body.
    http::async_read_header(stream_, buffer_, *parser_, [self = shared_from_this()](beast::error_code ec, size_t) {
      if (ec) return self->on_read(ec);
      self->stream_.expires_after(std::chrono::milliseconds(self->server_->options_.request_timeout_ms));
      auto expect = self->parser_->get()[http::field::expect];
      if (beast::iequals(expect, "100-continue") && !self->parser_->is_done()) {
        auto cont = std::make_shared<std::string>("HTTP/1.1 100 Continue\r\n\r\n");
        return net::async_write(self->stream_, net::buffer(*cont), [self, cont](beast::error_code wec, size_t) {
          if (wec) return self->close();
          self->read_body();
        });
      }
      self->read_body();
    });
  }

  void read_body() {
    http::async_read(stream_, buffer_, *parser_,
                     [self = shared_from_this()](beast::error_code ec, size_t) { self->on_read(ec); });
  }

  void on_read(beast::error_code ec) {
    if (ec == http::error::end_of_stream || ec == beast::error::timeout || ec == net::error::operation_aborted ||
        ec == net::error::connection_reset || ec == net::error::eof) {
      return close();
    }
    if (ec == http::error::body_limit) {
      return write(problem_response(413, "too_large", "Request body too large",
                                    "the body exceeds " + std::to_string(server_->options_.body_bytes_max) + " bytes",
                                    11, false));
    }
    if (ec) {
      return write(problem_response(400, "malformed", "Malformed HTTP request", ec.message(), 11, false));
    }
    stream_.expires_never();
    Request req = parser_->release();
    version_ = req.version();
    keep_alive_ = req.keep_alive();
    head_ = req.method() == http::verb::head;
    uint64_t generation = ++generation_;
    server_->in_flight_.fetch_add(1);
    counted_ = true;
    // The handler may answer later from another thread; a timer bounds the wait.
    timer_.expires_after(std::chrono::milliseconds(server_->options_.request_timeout_ms));
    timer_.async_wait([self = shared_from_this(), generation](beast::error_code tec) {
      if (tec || self->generation_ != generation || self->answered_) return;
      self->answered_ = true;
      self->write(problem_response(503, "timeout", "Request timed out",
                                   "no answer within the request timeout; retrying with the same op id is safe",
                                   self->version_, self->keep_alive_),
                  /*retry_after=*/true);
    });
    answered_ = false;
    auto self = shared_from_this();
    Respond respond = [self, generation](Response res) {
      net::post(self->stream_.get_executor(), [self, generation, res = std::move(res)]() mutable {
        if (self->generation_ != generation || self->answered_) return;  // timed out already
        self->answered_ = true;
        self->timer_.cancel();
        self->write(std::move(res));
      });
    };
    try {
      server_->handler_(std::move(req), std::move(respond));
    } catch (const std::exception& e) {
      // A handler bug must not take the node down; answer 500 and go on.
      answered_ = true;
      timer_.cancel();
      write(problem_response(500, "internal", "Internal error", e.what(), version_, false));
    }
  }

  void write(Response res, bool retry_after = false) {
    if (retry_after) res.set(http::field::retry_after, "1");
    if (server_->metrics_) server_->metrics_->count_request(res.result_int());
    res.version(version_);
    if (!keep_alive_) res.keep_alive(false);
    res.prepare_payload();
    if (!server_->accepting_) res.keep_alive(false);  // draining: last answer on this connection
    auto sp = std::make_shared<Response>(std::move(res));
    stream_.expires_after(std::chrono::milliseconds(server_->options_.request_timeout_ms));
    auto done = [self = shared_from_this(), sp](beast::error_code ec, size_t) {
      if (self->counted_) {
        self->counted_ = false;
        self->server_->in_flight_.fetch_sub(1);
      }
      if (ec || !sp->keep_alive() || !self->server_->accepting_) return self->close();
      self->do_read();
    };
    if (head_) {
      // HEAD: the GET answer's header (its Content-Length included), no body.
      auto sr = std::make_shared<http::response_serializer<http::string_body>>(*sp);
      http::async_write_header(stream_, *sr, [sr, done](beast::error_code ec, size_t n) { done(ec, n); });
    } else {
      http::async_write(stream_, *sp, std::move(done));
    }
  }

  void close() {
    beast::error_code ec;
    timer_.cancel();
    stream_.socket().shutdown(tcp::socket::shutdown_send, ec);
    stream_.socket().close(ec);
  }

  beast::tcp_stream stream_;
  HttpServer* server_;
  net::steady_timer timer_;
  std::shared_ptr<std::atomic<uint64_t>> connections_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  unsigned version_ = 11;
  bool keep_alive_ = true;
  bool first_ = true;
  bool answered_ = true;
  bool counted_ = false;  // this session holds one unit of in_flight_
  bool head_ = false;     // the request being answered is a HEAD
  uint64_t generation_ = 0;
};

namespace {
std::vector<std::unique_ptr<net::io_context>> make_iocs(size_t io_threads) {
  size_t n = io_threads ? io_threads : std::max(1u, std::thread::hardware_concurrency());
  std::vector<std::unique_ptr<net::io_context>> iocs;
  for (size_t i = 0; i < n; ++i) iocs.push_back(std::make_unique<net::io_context>(1));
  return iocs;
}
}  // namespace

HttpServer::HttpServer(ServerOptions options, Handler handler, Metrics* metrics)
    : options_(std::move(options)),
      handler_(std::move(handler)),
      metrics_(metrics),
      iocs_(make_iocs(options_.io_threads)),
      acceptor_(*iocs_.front()) {}

HttpServer::~HttpServer() { stop(); }

Status HttpServer::start() {
  beast::error_code ec;
  auto address = net::ip::make_address(options_.listen.host, ec);
  if (ec) return Status::error("io", "api address " + options_.listen.host + ": " + ec.message());
  tcp::endpoint ep(address, options_.listen.port);
  acceptor_.open(ep.protocol(), ec);
  if (!ec) acceptor_.set_option(net::socket_base::reuse_address(true), ec);
  if (!ec) acceptor_.bind(ep, ec);
  if (!ec) acceptor_.listen(net::socket_base::max_listen_connections, ec);
  if (ec) return Status::error("io", "cannot listen on " + options_.listen.to_string() + ": " + ec.message());
  port_ = acceptor_.local_endpoint().port();
  do_accept();
  for (auto& ioc : iocs_) {
    work_.push_back(net::make_work_guard(*ioc));
    threads_.emplace_back([ioc = ioc.get()] {
      pthread_setname_np(pthread_self(), "cl-http");
      ioc->run();
    });
  }
  return Status::ok();
}

void HttpServer::do_accept() {
  net::io_context& home = *iocs_[next_ioc_++ % iocs_.size()];
  acceptor_.async_accept(home, [this](beast::error_code ec, tcp::socket socket) {
    if (ec) {
      if (!acceptor_.is_open()) return;
    } else {
      socket.set_option(tcp::no_delay(true), ec);
      auto session = std::make_shared<Session>(std::move(socket), this);
      uint64_t open = connections_->load();
      if (metrics_) metrics_->set_connections(open);
      if (open > options_.connections_max) {
        if (metrics_) metrics_->count_overload();
        session->refuse();
      } else {
        session->run();
      }
    }
    do_accept();
  });
}

void HttpServer::stop_accepting() {
  if (!accepting_.exchange(false)) return;
  std::promise<void> closed;
  net::post(*iocs_.front(), [this, &closed] {
    beast::error_code ec;
    acceptor_.close(ec);
    closed.set_value();
  });
  if (!threads_.empty()) closed.get_future().wait();
}

void HttpServer::stop(uint64_t grace_ms) {
  if (stopped_.exchange(true)) return;
  stop_accepting();
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(grace_ms);
  while (in_flight_.load() > 0 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  work_.clear();
  for (auto& ioc : iocs_) ioc->stop();
  for (auto& t : threads_) t.join();
  threads_.clear();
}

}  // namespace cl::api
