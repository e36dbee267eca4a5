// Raft transport: Asio TCP between nodes.  Each node dials every peer and
// sends that peer's messages over its own outbound connection; inbound
// connections only receive.  Frames are codec.h message frames (length-
// prefixed, CRC-32C checked); a connection that delivers a bad frame is
// closed.  Outbound queues are bounded (messages dropped when full: Raft
// retries); reconnects back off exponentially.  Thread-safe send().
#pragma once

#include <utility>  // before Boost.Asio: Boost 1.74 + GCC 12 + C++20
#include <boost/asio.hpp>

#include <atomic>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "common/status.h"
#include "consensus/types.h"

namespace cl::raft {

struct PeerAddress {
  std::string host;
  uint16_t port = 0;
};

struct TransportOptions {
  size_t queue_frames_max = 4096;          // per peer
  size_t queue_bytes_max = 256u << 20;     // per peer
  uint64_t backoff_ms_min = 20;
  uint64_t backoff_ms_max = 1000;
};

struct TransportStats {
  uint64_t sent = 0, received = 0, dropped = 0, bad_frames = 0, connects = 0;
};

class Transport {
 public:
  // Called on the transport thread for every decoded message; must not block long.
  using Receive = std::function<void(Message)>;

  Transport(NodeId self, PeerAddress listen, Receive on_message, TransportOptions options = {});
  ~Transport();

  // Binds the listener and starts the I/O thread.
  Status start();
  // The bound port (when listen.port was 0).
  uint16_t port() const { return port_; }
  // Adds or replaces a peer's address (its queue is kept).
  void set_peer(NodeId id, PeerAddress address);
  void remove_peer(NodeId id);
  // Queues m for m.to; drops it (counted) if that peer is unknown or its queue is full.
  void send(const Message& m);
  void stop();
  TransportStats stats() const;

 private:
  class Outbound;
  class Inbound;
  void do_accept();

  NodeId self_;
  PeerAddress listen_;
  Receive on_message_;
  TransportOptions options_;
  boost::asio::io_context ioc_;
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> work_;
  boost::asio::ip::tcp::acceptor acceptor_;
  std::thread thread_;
  uint16_t port_ = 0;
  mutable std::mutex mu_;
  std::map<NodeId, std::shared_ptr<Outbound>> peers_;  // guarded by mu_
  std::atomic<uint64_t> sent_{0}, received_{0}, dropped_{0}, bad_frames_{0}, connects_{0};
  std::atomic<bool> stopped_{false};
};

}  // namespace cl::raft
