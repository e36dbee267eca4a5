#include "api/http_client.h"

#include <algorithm>

namespace cl::api {

namespace beast = boost::beast;
namespace http = beast::http;
namespace net = boost::asio;
using tcp = net::ip::tcp;

Result<Url> parse_url(const std::string& url) {
  std::string rest = url;
  const std::string scheme = "http://";
  if (rest.rfind(scheme, 0) != 0) return Status::error("invalid", "URL must start with http://: " + url);
  rest = rest.substr(scheme.size());
  Url u;
  auto slash = rest.find('/');
  std::string hostport = rest.substr(0, slash);
  if (slash != std::string::npos) u.path = rest.substr(slash);
  auto colon = hostport.rfind(':');
  u.host = hostport.substr(0, colon);
  if (colon != std::string::npos) {
    std::string p = hostport.substr(colon + 1);
    if (p.empty() || p.size() > 5 || p.find_first_not_of("0123456789") != std::string::npos || std::stoul(p) > 65535 ||
        std::stoul(p) == 0)
      return Status::error("invalid", "bad port in URL: " + url);
    u.port = static_cast<uint16_t>(std::stoul(p));
  }
  if (u.host.empty()) return Status::error("invalid", "no host in URL: " + url);
  return u;
}

HttpClient::HttpClient(std::string host, uint16_t port, uint64_t timeout_ms)
    : host_(std::move(host)), port_(port), timeout_ms_(timeout_ms) {}

HttpClient::~HttpClient() {
  if (stream_) {
    beast::error_code ec;
    stream_->socket().shutdown(tcp::socket::shutdown_both, ec);
  }
}

Status HttpClient::connect() {
  stream_.emplace(ioc_);
  buffer_.clear();
  beast::error_code ec;
  tcp::resolver resolver(ioc_);
  auto results = resolver.resolve(host_, std::to_string(port_), ec);
  if (ec) return Status::error("io", "resolve " + host_ + ": " + ec.message());
  stream_->expires_after(std::chrono::milliseconds(timeout_ms_));
  stream_->connect(results, ec);
  if (ec) {
    stream_.reset();
    return Status::error("io", "connect " + host_ + ":" + std::to_string(port_) + ": " + ec.message());
  }
  stream_->socket().set_option(tcp::no_delay(true), ec);
  return Status::ok();
}

Result<HttpResult> HttpClient::attempt(const std::string& method, const std::string& target, const std::string& body,
                                       const std::string& content_type,
                                       const std::map<std::string, std::string>& headers) {
  http::request<http::string_body> req{http::string_to_verb(method), target, 11};
  req.set(http::field::host, host_ + ":" + std::to_string(port_));
  req.set(http::field::user_agent, "cityledger");
  for (const auto& [k, v] : headers) req.set(k, v);
  if (!body.empty() || method == "POST") {
    req.set(http::field::content_type, content_type);
    req.body() = body;
  }
  req.keep_alive(true);
  req.prepare_payload();
  beast::error_code ec;
  stream_->expires_after(std::chrono::milliseconds(timeout_ms_));
  http::write(*stream_, req, ec);
  if (ec) return Status::error("io", "write: " + ec.message());
  http::response_parser<http::string_body> parser;
  parser.body_limit(1ull << 31);
  http::read(*stream_, buffer_, parser, ec);
  if (ec) return Status::error("io", "read: " + ec.message());
  auto& res = parser.get();
  HttpResult out;
  out.status = res.result_int();
  out.body = std::move(res.body());
  for (const auto& f : res) {
    std::string name(f.name_string());
    std::transform(name.begin(), name.end(), name.begin(), [](unsigned char c) { return std::tolower(c); });
    out.headers[name] = std::string(f.value());
  }
  if (!res.keep_alive()) stream_.reset();
  return out;
}

Result<HttpResult> HttpClient::request(const std::string& method, const std::string& target, const std::string& body,
                                       const std::string& content_type,
                                       const std::map<std::string, std::string>& headers) {
  for (int attempt_no = 0; attempt_no < 2; ++attempt_no) {
    bool fresh = !stream_;
    if (fresh) {
      Status s = connect();
      if (!s) return s;
    }
    auto r = attempt(method, target, body, content_type, headers);
    if (r) return r;
    stream_.reset();
    if (fresh) return r;  // a new connection failed: do not retry
  }
  return Status::error("io", "request failed");
}

Result<HttpResult> post_following_redirects(const std::string& base_url, const std::string& target,
                                            const std::string& body) {
  auto url = parse_url(base_url);
  if (!url) return url.status();
  std::string host = url->host;
  uint16_t port = url->port;
  std::string path = target;
  for (int hop = 0; hop < 6; ++hop) {
    HttpClient client(host, port);
    auto r = client.request("POST", path, body);
    if (!r) return r;
    if (r->status != 307 && r->status != 308) return r;
    std::string location = r->header("location");
    if (location.empty()) return Status::error("io", "redirect without Location");
    if (location.rfind("http://", 0) == 0) {
      auto next = parse_url(location);
      if (!next) return next.status();
      host = next->host;
      port = next->port;
      path = next->path;
    } else {
      path = location;
    }
  }
  return Status::error("io", "too many redirects");
}

}  // namespace cl::api
