#include "cli/cpu_meter.h"

#include <sys/resource.h>

#include <cstdio>
#include <filesystem>
#include <sstream>
#include <thread>

#include "api/process_metrics.h"

namespace cl::cli {
namespace {

std::optional<std::string> http_get(const api::Url& url, const std::string& target) {
  api::HttpClient c(url.host, url.port, 3000);
  auto r = c.request("GET", target);
  if (!r || r->status != 200) return std::nullopt;
  return r->body;
}

std::optional<Json> http_get_json(const api::Url& url, const std::string& target) {
  auto text = http_get(url, target);
  if (!text) return std::nullopt;
  auto doc = parse_json_strict(*text);
  if (!doc) return std::nullopt;
  return *doc;
}

double self_cpu_seconds() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  auto s = [](const timeval& t) { return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_usec) / 1e6; };
  return s(u.ru_utime) + s(u.ru_stime);
}

// /proc/stat's "cpu" line: user nice system idle iowait irq softirq steal.
void machine_ticks(uint64_t* busy, uint64_t* total) {
  *busy = *total = 0;
  auto text = api::read_proc_file("/proc/stat");
  if (!text) return;
  unsigned long long v[8] = {};
  if (std::sscanf(text->c_str(), "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3], &v[4],
                  &v[5], &v[6], &v[7]) != 8)
    return;
  for (auto x : v) *total += x;
  *busy = *total - v[3] - v[4];
}

std::optional<double> sample_value(const std::string& line, size_t from) {
  try {
    return std::stod(line.substr(from));
  } catch (...) {
    return std::nullopt;
  }
}

}  // namespace

NodeCpu parse_node_cpu(const std::string& text) {
  NodeCpu n;
  static const std::string kProcess = "process_cpu_seconds_total ";
  static const std::string kThread = "cityledger_thread_cpu_seconds_total{thread=\"";
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(kProcess, 0) == 0) {
      if (auto v = sample_value(line, kProcess.size())) {
        n.process_s = *v;
        n.ok = true;
      }
    } else if (line.rfind(kThread, 0) == 0) {
      size_t end = line.find("\"} ", kThread.size());
      if (end == std::string::npos) continue;
      if (auto v = sample_value(line, end + 3)) n.threads_s[line.substr(kThread.size(), end - kThread.size())] += *v;
    }
  }
  return n;
}

double processes_cpu_seconds(const std::string& name) {
  uint64_t ticks = 0;
  std::error_code ec;
  for (const auto& p : std::filesystem::directory_iterator("/proc", ec)) {
    const std::string pid = p.path().filename().string();
    if (pid.empty() || pid.find_first_not_of("0123456789") != std::string::npos) continue;
    auto stat = api::read_proc_file(p.path().string() + "/stat");
    if (!stat) continue;
    auto st = api::parse_proc_stat(*stat);
    if (st && st->name == name) ticks += st->cpu_ticks;
  }
  return api::ticks_to_seconds(ticks);
}

CpuMeter::CpuMeter(std::optional<api::Url> node, bool postgres) : node_(std::move(node)), postgres_(postgres) {}

CpuSnapshot CpuMeter::take(bool nodes) const {
  CpuSnapshot s;
  if (nodes) {
    for (const auto& m : members_) {
      NodeCpu n;
      if (auto text = http_get(m.url, "/metrics")) n = parse_node_cpu(*text);
      n.api = m.api;
      n.role = m.role;
      s.nodes.push_back(std::move(n));
    }
  }
  s.self_s = self_cpu_seconds();
  if (postgres_) s.postgres_s = processes_cpu_seconds("postgres");
  machine_ticks(&s.machine_busy_ticks, &s.machine_total_ticks);
  return s;
}

void CpuMeter::start() {
  members_.clear();
  auto cluster = node_ ? http_get_json(*node_, "/v1/cluster") : std::nullopt;
  if (cluster && (*cluster)["peers"].is_array()) {
    for (const auto& p : (*cluster)["peers"]) {
      if (!p["api"].is_string()) continue;
      auto url = api::parse_url("http://" + p["api"].get<std::string>());
      if (!url) continue;
      auto own = http_get_json(*url, "/v1/cluster");
      members_.push_back(Member{*url, p["api"].get<std::string>(),
                                own && (*own)["role"].is_string() ? (*own)["role"].get<std::string>() : "?"});
    }
  }
  start_ = take(true);
  load_end_.reset();
  end_.reset();
}

void CpuMeter::load_ended() { load_end_ = take(false); }

void CpuMeter::finish() { end_ = take(true); }

Json CpuMeter::report(uint64_t accepted_ops) const {
  if (!start_ || !load_end_ || !end_ || accepted_ops == 0) return Json();
  const double ops = static_cast<double>(accepted_ops);
  auto us_per_op = [&](double seconds) { return seconds * 1e6 / ops; };
  unsigned cores = std::max(1u, std::thread::hardware_concurrency());
  Json j{{"cores", cores}, {"accepted_ops", accepted_ops}};
  uint64_t total_ticks = load_end_->machine_total_ticks - start_->machine_total_ticks;
  if (total_ticks > 0)
    j["machine_busy"] =
        static_cast<double>(load_end_->machine_busy_ticks - start_->machine_busy_ticks) / static_cast<double>(total_ticks);
  double generator = us_per_op(load_end_->self_s - start_->self_s);
  j["generator_us_per_op"] = generator;
  double total = generator;
  Json nodes = Json::array();
  for (size_t i = 0; i < start_->nodes.size() && i < end_->nodes.size(); ++i) {
    const NodeCpu& a = start_->nodes[i];
    const NodeCpu& b = end_->nodes[i];
    Json n{{"api", a.api}, {"role", a.role}};
    if (!a.ok || !b.ok) {
      n["us_per_op"] = nullptr;  // a node that did not answer: not counted
    } else {
      double node = us_per_op(b.process_s - a.process_s);
      n["us_per_op"] = node;
      total += node;
      Json threads = Json::object();
      for (const auto& [name, seconds] : b.threads_s) {
        auto before = a.threads_s.find(name);
        double spent = seconds - (before == a.threads_s.end() ? 0 : before->second);
        if (spent > 0) threads[name] = us_per_op(spent);
      }
      n["threads_us_per_op"] = threads;
    }
    nodes.push_back(n);
  }
  if (!nodes.empty()) j["nodes"] = nodes;
  if (start_->postgres_s >= 0 && end_->postgres_s >= 0) {
    double pg = us_per_op(end_->postgres_s - start_->postgres_s);
    j["postgres_us_per_op"] = pg;
    total += pg;
  }
  j["total_us_per_op"] = total;
  if (total > 0) j["cpu_bound_ops_per_sec"] = static_cast<double>(cores) * 1e6 / total;
  return j;
}

}  // namespace cl::cli
