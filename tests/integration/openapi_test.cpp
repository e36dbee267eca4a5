// api/openapi.yaml describes exactly the routes a node serves: the (method,
// path) pairs under its `paths:` equal Node::routes(), both ways, every
// `$ref` in it resolves, and a running `cityledger node` answers each route
// (and 404s a path that is not one).
//
// No YAML library is installed, so the spec is read by a small line-based
// reader that knows only the shape api/openapi.yaml keeps: path keys at
// 2-space indent under `paths:`, their methods at 4-space indent.  It is
// strict: anything else at those indents fails the test rather than being
// skipped, so the spec cannot drift into a form this check does not see.
#include <doctest/doctest.h>

#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "api/http_client.h"
#include "api/node.h"
#include "tests/integration/node_process.h"
#include "wallet/jcs.h"

namespace cl::test {
namespace {

using RouteKey = std::pair<std::string, std::string>;  // (METHOD, path)

struct SpecPaths {
  std::set<RouteKey> routes;
  std::vector<std::string> errors;  // empty when the section read cleanly
};

const std::set<std::string> kHttpMethods = {"get", "put", "post", "delete", "options", "head", "patch", "trace"};
// Path Item fields other than methods that the reader accepts (and ignores).
const std::set<std::string> kPathItemFields = {"summary", "description", "parameters", "servers"};

size_t indent_of(const std::string& line) { return line.find_first_not_of(' '); }

// "key:" (optionally followed by spaces and a comment) → key; else "".
std::string bare_key(const std::string& text) {
  auto colon = text.find(':');
  if (colon == std::string::npos || colon == 0) return "";
  std::string rest = text.substr(colon + 1);
  auto nonblank = rest.find_first_not_of(' ');
  if (nonblank != std::string::npos && rest[nonblank] != '#') return "";
  return text.substr(0, colon);
}

std::string upper(std::string s) {
  for (char& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return s;
}

// Reads the (method, path) pairs of the `paths:` section of "yaml".
SpecPaths read_spec_paths(const std::string& yaml) {
  SpecPaths out;
  std::istringstream in(yaml);
  std::string line;
  int line_no = 0;
  int sections = 0;
  bool inside = false;
  std::string path;        // the path key being read
  int path_methods = 0;    // methods seen under it
  std::set<std::string> paths_seen;
  auto error = [&](const std::string& what) { out.errors.push_back("line " + std::to_string(line_no) + ": " + what); };
  auto close_path = [&] {
    if (!path.empty() && path_methods == 0) error("path " + path + " lists no method");
    path.clear();
    path_methods = 0;
  };
  while (std::getline(in, line)) {
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (inside && line.find('\t') != std::string::npos) {
      error("tab in the paths section");
      continue;
    }
    size_t indent = indent_of(line);
    if (indent == std::string::npos || line[indent] == '#') continue;  // blank or comment
    if (indent == 0) {
      if (inside) close_path();
      inside = line == "paths:";
      if (inside) ++sections;
      continue;
    }
    if (!inside) continue;
    std::string key = bare_key(line.substr(indent));
    if (indent == 2) {
      close_path();
      if (key.empty() || key[0] != '/') {
        error("expected a path key like \"  /v1/ops:\", got \"" + line + "\"");
        continue;
      }
      if (!paths_seen.insert(key).second) error("path " + key + " listed twice");
      path = key;
    } else if (indent == 4) {
      if (path.empty()) {
        error("a 4-space key outside a path: \"" + line + "\"");
        continue;
      }
      std::string field = key.empty() ? line.substr(indent, line.find(':') - indent) : key;
      if (kHttpMethods.count(key)) {
        ++path_methods;
        if (!out.routes.insert({upper(key), path}).second) error(key + " listed twice under " + path);
      } else if (!kPathItemFields.count(field)) {
        error("unexpected key under " + path + ": \"" + line + "\"");
      }
    } else if (indent < 6) {
      error("unexpected indent " + std::to_string(indent) + ": \"" + line + "\"");
    }
    // Deeper lines belong to an operation: not this reader's business.
  }
  if (inside) close_path();
  if (sections != 1) out.errors.push_back("expected exactly one top-level \"paths:\", found " + std::to_string(sections));
  return out;
}

// Every `$ref: '#/components/SECTION/NAME'` names a NAME defined at 4-space
// indent under SECTION (2-space indent) of the top-level `components:`.
std::vector<std::string> unresolved_refs(const std::string& yaml) {
  std::set<std::string> defined;
  std::istringstream in(yaml);
  std::string line, section;
  bool inside = false;
  while (std::getline(in, line)) {
    size_t indent = indent_of(line);
    if (indent == std::string::npos || line[indent] == '#') continue;
    if (indent == 0) inside = line == "components:";
    if (!inside) continue;
    std::string key = bare_key(line.substr(indent));
    if (indent == 2) section = key;
    if (indent == 4 && !key.empty()) defined.insert(section + "/" + key);
  }
  std::vector<std::string> missing;
  static const std::regex kRef(R"(\$ref: *'#/components/([A-Za-z]+/[A-Za-z0-9_.-]+)')");
  for (std::sregex_iterator it(yaml.begin(), yaml.end(), kRef), end; it != end; ++it) {
    if (!defined.count((*it)[1])) missing.push_back((*it)[1]);
  }
  return missing;
}

std::string spec_text() {
  std::string text = read_file(CL_SOURCE_DIR "/api/openapi.yaml");
  REQUIRE_MESSAGE(!text.empty(), "cannot read " CL_SOURCE_DIR "/api/openapi.yaml");
  return text;
}

std::set<RouteKey> node_routes() {
  std::set<RouteKey> out;
  for (const auto& r : api::Node::routes()) out.insert({r.method, r.path});
  return out;
}

// "/v1/wallets/{id}/entries" with "{id}" → a valid-looking id.
std::string fill_template(std::string path) {
  const std::string kId = "000102030405060708090a0b0c0d0e0f";
  for (auto at = path.find('{'); at != std::string::npos; at = path.find('{')) {
    path.replace(at, path.find('}', at) - at + 1, kId);
  }
  return path;
}

Json body_json(const api::HttpResult& r) {
  Json j = Json::parse(r.body, nullptr, /*allow_exceptions=*/false);
  return j.is_discarded() ? Json::object() : j;
}

bool is_no_route(const api::HttpResult& r) {
  Json j = body_json(r);
  return r.status == 404 && j.value("code", "") == "not_found" && j.value("detail", "").rfind("no route", 0) == 0;
}

}  // namespace

TEST_CASE("the paths reader reads methods per path and refuses what it does not know") {
  SpecPaths ok = read_spec_paths(
      "openapi: 3.0.3\npaths:\n  /a:\n    get:\n      summary: x\n    post:\n  /b/{id}:\n    # a comment\n"
      "    summary: b\n    get:\n      responses:\n        '200':\n          description: y\ncomponents:\n  x:\n");
  CHECK(ok.errors.empty());
  CHECK(ok.routes == std::set<RouteKey>{{"GET", "/a"}, {"POST", "/a"}, {"GET", "/b/{id}"}});

  CHECK(!read_spec_paths("paths:\n  /a:\n    get:\n  /a:\n    post:\n").errors.empty());       // path twice
  CHECK(!read_spec_paths("paths:\n  /a:\n    get:\n    get:\n").errors.empty());                 // method twice
  CHECK(!read_spec_paths("paths:\n  /a:\n   get:\n").errors.empty());                          // odd indent
  CHECK(!read_spec_paths("paths:\n  /a:\n    gett:\n").errors.empty());                        // unknown key
  CHECK(!read_spec_paths("paths:\n  a:\n    get:\n").errors.empty());                          // not a path
  CHECK(!read_spec_paths("paths:\n  /a:\n  /b:\n    get:\n").errors.empty());                  // no method
  CHECK(!read_spec_paths("paths:\n  '/a':\n    get:\n").errors.empty());                       // quoted
  CHECK(!read_spec_paths("paths:\n  /a:\n\t  get:\n").errors.empty());                         // tab
  CHECK(!read_spec_paths("info:\n  title: x\n").errors.empty());                               // no paths
  CHECK(!read_spec_paths("paths:\n  /a:\n    get:\npaths:\n  /b:\n    get:\n").errors.empty());  // two sections
}

TEST_CASE("openapi.yaml lists exactly the routes of Node::routes()") {
  std::string text = spec_text();
  CHECK(text.rfind("openapi: 3.0.3\n", 0) == 0);
  SpecPaths spec = read_spec_paths(text);
  for (const auto& e : spec.errors) FAIL_CHECK("api/openapi.yaml " << e);
  REQUIRE(spec.errors.empty());

  std::set<RouteKey> served = node_routes();
  CHECK(served.size() == api::Node::routes().size());  // no route listed twice in the table
  for (const auto& [method, path] : served) {
    CHECK_MESSAGE(spec.routes.count({method, path}), "served but not in api/openapi.yaml: " << method << " " << path);
  }
  for (const auto& [method, path] : spec.routes) {
    CHECK_MESSAGE(served.count({method, path}), "in api/openapi.yaml but not served: " << method << " " << path);
  }
}

TEST_CASE("every $ref in openapi.yaml names a component it defines") {
  for (const auto& ref : unresolved_refs(spec_text())) FAIL_CHECK("unresolved $ref #/components/" << ref);
}

TEST_CASE("a running node serves every route of Node::routes() and 404s any other path") {
  NodeProcess node;
  node.start();
  api::HttpClient client("127.0.0.1", node.port(), 10000);

  REQUIRE(!node_routes().empty());
  for (const auto& [method, path] : node_routes()) {
    std::string target = fill_template(path);
    auto r = client.request(method, target, method == "POST" ? "{}" : "");
    REQUIRE_MESSAGE(r.is_ok(), method << " " << target << ": " << r.status().message());
    // An {id} route may 404 an unknown id, but never with "no route".
    CHECK_MESSAGE(!is_no_route(*r), method << " " << target << " is not routed: " << r->body);
    CHECK_MESSAGE(r->status != 405, method << " " << target << " is not allowed: " << r->body);
    CHECK_MESSAGE(r->status < 500, method << " " << target << " → " << r->status << " " << r->body);

    // A method the spec does not list for this path is 405, with Allow.
    const std::string unlisted = method == "DELETE" ? "PUT" : "DELETE";
    auto other = client.request(unlisted, target);
    REQUIRE(other.is_ok());
    CHECK_MESSAGE(other->status == 405, unlisted << " " << target << " → " << other->status);
    CHECK(other->header("allow") == (method == "GET" ? std::string("GET, HEAD") : method));
  }

  for (const char* target : {"/", "/v1", "/v1/nope", "/v2/ops", "/v1/wallets/000102030405060708090a0b0c0d0e0f/nope",
                                   "/v1/ops/000102030405060708090a0b0c0d0e0f/more", "/healthz/x"}) {
    auto r = client.request("GET", target);
    REQUIRE(r.is_ok());
    CHECK_MESSAGE(is_no_route(*r), "GET " << target << " → " << r->status << " " << r->body);
    CHECK(r->header("content-type") == "application/problem+json");
  }
}

}  // namespace cl::test
