// The README's commands work as printed: `scripts/run.sh --detach` starts a
// node and prints copy-paste commands, `scripts/demo.sh URL` runs a city
// morning against it, each printed command succeeds when run from the
// repository root, and `scripts/run.sh --stop` stops the node cleanly.
//
// The scripts run on a private node: a config in a temporary directory (the
// repository's demo genesis and node 1 key, a free port), with logs, pid
// files and demo keys there too, and the binary of the build tree this test
// belongs to (never rebuilt by the script).
#include <doctest/doctest.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "api/http_client.h"
#include "tests/integration/node_process.h"

namespace cl::test {
namespace {

// True while "pid" is a process that has not exited (a zombie counts as exited).
bool process_running(pid_t pid) {
  std::string stat = read_file("/proc/" + std::to_string(pid) + "/stat");
  if (stat.empty()) return false;
  auto close = stat.rfind(')');
  return close == std::string::npos || close + 2 >= stat.size() || stat[close + 2] != 'Z';
}

int exit_status(int raw) { return raw != -1 && WIFEXITED(raw) ? WEXITSTATUS(raw) : -1; }

// A private node config for the scripts, and the environment they run with.
class ScriptEnv {
 public:
  ScriptEnv() : port_(free_port()) {
    std::filesystem::copy_file(CL_SOURCE_DIR "/config/genesis.json", dir_.sub("genesis.json"));
    std::filesystem::copy_file(CL_SOURCE_DIR "/config/demo/node1.key", dir_.sub("node1.key"));
    ::chmod(dir_.sub("node1.key").c_str(), 0600);
    std::string raft = "127.0.0.1:" + std::to_string(free_port());
    std::string api = "127.0.0.1:" + std::to_string(port_);
    write_text(config_path(), "{\"node_id\":1,\"data_dir\":\"ledger\",\"key_file\":\"node1.key\",\"genesis\":\"genesis.json\","
                              "\"api\":\"" + api + "\",\"raft\":\"" + raft + "\",\"peers\":[{\"id\":1,\"raft\":\"" + raft +
                              "\",\"api\":\"" + api + "\"}]}");
  }
  ~ScriptEnv() {
    if (!started_) return;
    // The test failed before --stop: do not leave a node behind.
    run("bash scripts/run.sh --stop", "cleanup.out");
    pid_t pid = node_pid();
    if (pid > 0 && process_running(pid)) ::kill(pid, SIGKILL);
  }
  ScriptEnv(const ScriptEnv&) = delete;
  ScriptEnv& operator=(const ScriptEnv&) = delete;

  std::string config_path() const { return dir_.sub("node.json"); }
  std::string data_dir() const { return dir_.sub("data"); }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  uint16_t port() const { return port_; }
  const TempDir& dir() const { return dir_; }
  void set_started(bool started) { started_ = started; }

  pid_t node_pid() const {
    std::string text = read_file(data_dir() + "/run/node-1.pid");
    return text.empty() ? -1 : static_cast<pid_t>(std::atol(text.c_str()));
  }

  // Runs "command" with bash from the repository root, in the scripts'
  // environment, output to "out_name" in the temp dir; returns the exit code.
  int run(const std::string& command, const std::string& out_name) const {
    std::string line = "cd '" CL_SOURCE_DIR "' && CITYLEDGER_CONFIG='" + config_path() + "' CITYLEDGER_DATA='" +
                       data_dir() + "' CITYLEDGER_BUILD='" CL_BINARY_DIR "' CITYLEDGER_REBUILD=0 " + command + " >'" +
                       dir_.sub(out_name) + "' 2>&1 </dev/null";
    return exit_status(std::system(line.c_str()));
  }
  std::string output(const std::string& out_name) const { return read_file(dir_.sub(out_name)); }

 private:
  TempDir dir_;
  uint16_t port_;
  bool started_ = false;
};

// The lines between `--- commands ---` and `--- end ---`, without comments and blanks.
std::vector<std::string> printed_commands(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  std::string line;
  bool inside = false, ended = false;
  while (std::getline(in, line)) {
    if (line == "--- commands ---") {
      inside = true;
    } else if (line == "--- end ---") {
      ended = inside;
      inside = false;
    } else if (inside && !line.empty() && line[0] != '#') {
      out.push_back(line);
    }
  }
  REQUIRE_MESSAGE(ended, "no --- commands --- … --- end --- block in:\n" << text);
  return out;
}

bool ready(uint16_t port) {
  api::HttpClient c("127.0.0.1", port, 1000);
  auto r = c.request("GET", "/readyz");
  return r.is_ok() && r->status == 200;
}

}  // namespace

TEST_CASE("run.sh starts a node, demo.sh runs a morning on it, the printed commands work, run.sh --stop stops it") {
  // The scripts run this build tree's binary.
  REQUIRE(std::string(CL_CITYLEDGER_BIN) == std::string(CL_BINARY_DIR) + "/cli/cityledger");
  ScriptEnv env;

  // Start, detached.
  env.set_started(true);
  int rc = env.run("bash scripts/run.sh --detach", "run.out");
  std::string run_out = env.output("run.out");
  REQUIRE_MESSAGE(rc == 0, "scripts/run.sh --detach exited " << rc << ":\n" << run_out);
  CHECK(run_out.find("cityledger is up: " + env.url()) != std::string::npos);
  pid_t pid = env.node_pid();
  REQUIRE(pid > 0);
  CHECK(process_running(pid));
  CHECK(ready(env.port()));

  // A second start refuses while the node runs.
  CHECK(env.run("bash scripts/run.sh --detach", "run-again.out") != 0);
  CHECK(process_running(pid));

  // The scripted morning.
  rc = env.run("bash scripts/demo.sh " + env.url(), "demo.out");
  std::string demo_out = env.output("demo.out");
  CHECK_MESSAGE(rc == 0, "scripts/demo.sh exited " << rc << ":\n" << demo_out);
  CHECK(demo_out.find("The morning went as expected.") != std::string::npos);

  // The copy-paste commands, each on its own, in order.
  std::vector<std::string> commands = printed_commands(run_out);
  REQUIRE(commands.size() >= 5);
  bool any_uses_url = false;
  for (size_t i = 0; i < commands.size(); ++i) {
    any_uses_url = any_uses_url || commands[i].find(env.url()) != std::string::npos;
    std::string script = env.dir().sub("command-" + std::to_string(i) + ".sh");
    write_text(script, commands[i] + "\n");
    std::string out_name = "command-" + std::to_string(i) + ".out";
    rc = env.run("bash -o pipefail '" + script + "'", out_name);
    CHECK_MESSAGE(rc == 0, "printed command failed (exit " << rc << "):\n" << commands[i] << "\n" << env.output(out_name));
  }
  CHECK(any_uses_url);
  std::string last = env.output("command-" + std::to_string(commands.size() - 1) + ".out");
  CHECK_MESSAGE(last.find("\"outstanding\"") != std::string::npos, "the last command should read the supply:\n" << last);

  // Stop: SIGTERM, the node finishes and exits cleanly.
  rc = env.run("bash scripts/run.sh --stop", "stop.out");
  CHECK_MESSAGE(rc == 0, "scripts/run.sh --stop exited " << rc << ":\n" << env.output("stop.out"));
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (process_running(pid) && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  CHECK_MESSAGE(!process_running(pid), "node pid " << pid << " still running after scripts/run.sh --stop");
  CHECK(!ready(env.port()));
  std::string log = read_file(env.data_dir() + "/logs/node-1.log");
  CHECK_MESSAGE(log.find("event=node_stopped") != std::string::npos, "no clean stop in the node log:\n" << log);
  env.set_started(false);
}

}  // namespace cl::test
