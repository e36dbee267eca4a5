#include "consensus/transport.h"

#include <pthread.h>

#include "consensus/codec.h"

namespace cl::raft {

namespace net = boost::asio;
using tcp = net::ip::tcp;
using error_code = boost::system::error_code;

// One outbound connection: connect, write queued frames in order, reconnect
// with backoff after any error.  All state lives on the transport's thread
// except the queue, guarded by mu_.
class Transport::Outbound : public std::enable_shared_from_this<Transport::Outbound> {
 public:
  Outbound(Transport* t, PeerAddress address)
      : t_(t), address_(std::move(address)), socket_(t->ioc_), timer_(t->ioc_) {}

  void set_address(PeerAddress a) {
    net::post(t_->ioc_, [self = shared_from_this(), a = std::move(a)]() mutable {
      self->address_ = std::move(a);
      self->reset();
    });
  }

  // Returns false if the queue is full.
  bool enqueue(std::string frame) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (queue_.size() >= t_->options_.queue_frames_max ||
          queued_bytes_ + frame.size() > t_->options_.queue_bytes_max)
        return false;
      queued_bytes_ += frame.size();
      queue_.push_back(std::move(frame));
    }
    net::post(t_->ioc_, [self = shared_from_this()] { self->pump(); });
    return true;
  }

  void close() {
    net::post(t_->ioc_, [self = shared_from_this()] {
      self->closed_ = true;
      self->reset();
      self->timer_.cancel();
    });
  }

 private:
  void pump() {
    if (closed_ || writing_) return;
    if (!connected_) return connect();
    std::string frame;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (queue_.empty()) return;
      frame = std::move(queue_.front());
      queue_.pop_front();
      queued_bytes_ -= frame.size();
    }
    writing_ = true;
    auto buf = std::make_shared<std::string>(std::move(frame));
    net::async_write(socket_, net::buffer(*buf), [self = shared_from_this(), buf](error_code ec, size_t) {
      self->writing_ = false;
      if (ec) return self->fail();
      self->t_->sent_.fetch_add(1);
      self->pump();
    });
  }

  void connect() {
    if (connecting_ || closed_) return;
    connecting_ = true;
    error_code ec;
    auto addr = net::ip::make_address(address_.host, ec);
    if (ec) {
      connecting_ = false;
      return fail();
    }
    socket_.async_connect(tcp::endpoint(addr, address_.port), [self = shared_from_this()](error_code cec) {
      self->connecting_ = false;
      if (cec) return self->fail();
      error_code ignored;
      self->socket_.set_option(tcp::no_delay(true), ignored);
      self->connected_ = true;
      self->backoff_ms_ = 0;
      self->t_->connects_.fetch_add(1);
      self->pump();
    });
  }

  void reset() {
    error_code ec;
    socket_.close(ec);
    socket_ = tcp::socket(t_->ioc_);
    connected_ = false;
    connecting_ = false;
    writing_ = false;
  }

  // After an error: drop the connection and retry after a growing delay.
  void fail() {
    reset();
    if (closed_) return;
    backoff_ms_ = backoff_ms_ == 0 ? t_->options_.backoff_ms_min : std::min(backoff_ms_ * 2, t_->options_.backoff_ms_max);
    timer_.expires_after(std::chrono::milliseconds(backoff_ms_));
    timer_.async_wait([self = shared_from_this()](error_code ec) {
      if (!ec) self->pump();
    });
  }

  Transport* t_;
  PeerAddress address_;
  tcp::socket socket_;
  net::steady_timer timer_;
  std::mutex mu_;
  std::deque<std::string> queue_;  // guarded by mu_
  size_t queued_bytes_ = 0;        // guarded by mu_
  bool connected_ = false, connecting_ = false, writing_ = false, closed_ = false;
  uint64_t backoff_ms_ = 0;
};

// One inbound connection: read frames, decode, deliver.
class Transport::Inbound : public std::enable_shared_from_this<Transport::Inbound> {
 public:
  Inbound(Transport* t, tcp::socket socket) : t_(t), socket_(std::move(socket)) {}
  void run() { read_header(); }

 private:
  void read_header() {
    net::async_read(socket_, net::buffer(header_), [self = shared_from_this()](error_code ec, size_t) {
      if (ec) return;
      uint32_t len = 0;
      for (int i = 3; i >= 0; --i) len = (len << 8) | self->header_[i];
      if (len > kMaxFrameBytes) {
        self->t_->bad_frames_.fetch_add(1);
        return;  // closes: the socket dies with the last reference
      }
      self->body_.resize(4 + len + 4);
      std::memcpy(self->body_.data(), self->header_.data(), 4);
      self->read_body();
    });
  }

  void read_body() {
    net::async_read(socket_, net::buffer(body_.data() + 4, body_.size() - 4),
                    [self = shared_from_this()](error_code ec, size_t) {
                      if (ec) return;
                      auto m = decode_message(self->body_);
                      if (!m) {
                        self->t_->bad_frames_.fetch_add(1);
                        return;
                      }
                      self->t_->received_.fetch_add(1);
                      self->t_->on_message_(std::move(*m));
                      self->read_header();
                    });
  }

  Transport* t_;
  tcp::socket socket_;
  std::array<uint8_t, 4> header_{};
  std::string body_;
};

Transport::Transport(NodeId self, PeerAddress listen, Receive on_message, TransportOptions options)
    : self_(self), listen_(std::move(listen)), on_message_(std::move(on_message)), options_(options),
      work_(net::make_work_guard(ioc_)), acceptor_(ioc_) {}

Transport::~Transport() { stop(); }

Status Transport::start() {
  error_code ec;
  auto addr = net::ip::make_address(listen_.host, ec);
  if (ec) return Status::error("io", "raft address " + listen_.host + ": " + ec.message());
  tcp::endpoint ep(addr, listen_.port);
  acceptor_.open(ep.protocol(), ec);
  if (!ec) acceptor_.set_option(net::socket_base::reuse_address(true), ec);
  if (!ec) acceptor_.bind(ep, ec);
  if (!ec) acceptor_.listen(net::socket_base::max_listen_connections, ec);
  if (ec) return Status::error("io", "cannot listen for raft on " + listen_.host + ":" + std::to_string(listen_.port) +
                                         ": " + ec.message());
  port_ = acceptor_.local_endpoint().port();
  do_accept();
  thread_ = std::thread([this] {
    pthread_setname_np(pthread_self(), "cl-raft-net");
    ioc_.run();
  });
  return Status::ok();
}

void Transport::do_accept() {
  acceptor_.async_accept([this](error_code ec, tcp::socket socket) {
    if (!acceptor_.is_open()) return;
    if (!ec) {
      error_code ignored;
      socket.set_option(tcp::no_delay(true), ignored);
      std::make_shared<Inbound>(this, std::move(socket))->run();
    }
    do_accept();
  });
}

void Transport::set_peer(NodeId id, PeerAddress address) {
  if (id == self_) return;
  std::lock_guard<std::mutex> lock(mu_);
  auto it = peers_.find(id);
  if (it != peers_.end()) it->second->set_address(std::move(address));
  else peers_.emplace(id, std::make_shared<Outbound>(this, std::move(address)));
}

void Transport::remove_peer(NodeId id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = peers_.find(id);
  if (it == peers_.end()) return;
  it->second->close();
  peers_.erase(it);
}

void Transport::send(const Message& m) {
  std::shared_ptr<Outbound> peer;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = peers_.find(m.to);
    if (it != peers_.end()) peer = it->second;
  }
  if (!peer || stopped_ || !peer->enqueue(encode_message(m))) dropped_.fetch_add(1);
}

void Transport::stop() {
  if (stopped_.exchange(true)) return;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& [id, p] : peers_) p->close();
  }
  net::post(ioc_, [this] {
    error_code ec;
    acceptor_.close(ec);
  });
  work_.reset();
  ioc_.stop();
  if (thread_.joinable()) thread_.join();
}

TransportStats Transport::stats() const {
  return TransportStats{sent_.load(), received_.load(), dropped_.load(), bad_frames_.load(), connects_.load()};
}

}  // namespace cl::raft
