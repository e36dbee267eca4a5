// A minimal blocking HTTP/1.1 client (Beast) with keep-alive, for the CLI,
// the load generator and black-box tests.  One connection per client; not
// thread-safe (use one client per thread).
#pragma once

#include <utility>  // before Boost.Asio: Boost 1.74 + GCC 12 + C++20
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <map>
#include <optional>
#include <string>

#include "common/status.h"

namespace cl::api {

struct HttpResult {
  int status = 0;
  std::string body;
  std::map<std::string, std::string> headers;  // lower-case names
  std::string header(const std::string& name) const {
    auto it = headers.find(name);
    return it == headers.end() ? "" : it->second;
  }
};

// Splits "http://host:port[/path]" into host, port and path.
struct Url {
  std::string host;
  uint16_t port = 80;
  std::string path = "/";
};
Result<Url> parse_url(const std::string& url);

class HttpClient {
 public:
  HttpClient(std::string host, uint16_t port, uint64_t timeout_ms = 30000);
  ~HttpClient();

  // Sends one request and reads the response; reconnects once if the kept-
  // alive connection was closed by the server.  Status "io" on failure.
  Result<HttpResult> request(const std::string& method, const std::string& target, const std::string& body = "",
                             const std::string& content_type = "application/json",
                             const std::map<std::string, std::string>& headers = {});

  const std::string& host() const { return host_; }
  uint16_t port() const { return port_; }

 private:
  Status connect();
  Result<HttpResult> attempt(const std::string& method, const std::string& target, const std::string& body,
                             const std::string& content_type, const std::map<std::string, std::string>& headers);

  std::string host_;
  uint16_t port_;
  uint64_t timeout_ms_;
  boost::asio::io_context ioc_;
  std::optional<boost::beast::tcp_stream> stream_;
  boost::beast::flat_buffer buffer_;
};

// POSTs to "url" + target, following up to 5 redirects (307/308, Location).
Result<HttpResult> post_following_redirects(const std::string& base_url, const std::string& target,
                                            const std::string& body);

}  // namespace cl::api
