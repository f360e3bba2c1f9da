#include "stack.h"

#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <fcntl.h>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "http_client.h"
#include "portico/testing/pg_cluster.h"

extern char** environ;

namespace portico::testing {

Process::Process(std::string name, const std::string& binary, const std::vector<std::string>& env,
                 std::string log_path)
    : name_(std::move(name)), log_path_(std::move(log_path)) {
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 1, log_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC,
                                   0644);
  posix_spawn_file_actions_adddup2(&actions, 1, 2);
  // The test process may block signals; the child starts with a clean mask.
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t none;
  sigemptyset(&none);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK);
  std::vector<std::string> env_strings;
  for (char** e = environ; *e; ++e) {
    if (std::string_view(*e).starts_with("PORTICO_")) continue;  // only what the test sets
    env_strings.emplace_back(*e);
  }
  env_strings.insert(env_strings.end(), env.begin(), env.end());
  std::vector<char*> envp;
  for (auto& s : env_strings) envp.push_back(s.data());
  envp.push_back(nullptr);
  std::string bin = binary;
  char* argv[] = {bin.data(), nullptr};
  const int rc = posix_spawn(&pid_, bin.c_str(), &actions, &attr, argv, envp.data());
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  if (rc != 0) throw std::runtime_error("cannot start " + binary);
}

Process::~Process() { Stop(); }

bool Process::Running() {
  if (pid_ <= 0) return false;
  int status = 0;
  const pid_t r = waitpid(pid_, &status, WNOHANG);
  if (r == 0) return true;
  exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  pid_ = -1;
  return false;
}

int Process::Stop() {
  if (pid_ <= 0) return exit_code_;
  kill(pid_, SIGTERM);
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (Running()) {
    if (std::chrono::steady_clock::now() > until) {
      kill(pid_, SIGKILL);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return exit_code_;
}

std::string Process::Log() const {
  std::ifstream in(log_path_);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

Stack::Stack() {
  char tmpl[] = "/tmp/portico-e2e-XXXXXX";
  dir_ = mkdtemp(tmpl);
  PgCluster& pg = SharedPgCluster();
  static int counter = 0;
  const std::string suffix = std::to_string(getpid()) + "_" + std::to_string(counter++);
  const std::string users_db = pg.CreateDatabase("e2e_users_" + suffix);
  const std::string data_db = pg.CreateDatabase("e2e_data_" + suffix);
  ports_ = {FreeTcpPort(), FreeTcpPort(), FreeTcpPort(),
            FreeTcpPort(), FreeTcpPort(), FreeTcpPort()};
  auto addr = [](std::uint16_t p) { return "127.0.0.1:" + std::to_string(p); };
  const std::vector<std::string> common = {"PORTICO_LOG_LEVEL=debug", "PORTICO_LOG_FORMAT=json"};
  auto with = [&](std::vector<std::string> env) {
    env.insert(env.end(), common.begin(), common.end());
    return env;
  };
  users_ = std::make_unique<Process>(
      "users", PORTICO_USERS_BIN,
      with({"PORTICO_GRPC_ADDR=" + addr(ports_.users_grpc),
            "PORTICO_ADMIN_ADDR=" + addr(ports_.users_admin), "PORTICO_DATABASE_URL=" + users_db,
            "PORTICO_DATA_TARGET=" + addr(ports_.data_grpc),
            // Cheap hashing keeps the suite fast; production defaults are tested in unit tests.
            "PORTICO_ARGON2_MEMORY=8MiB", "PORTICO_ARGON2_ITERATIONS=1"}),
      dir_ + "/users.log");
  data_ = std::make_unique<Process>(
      "data", PORTICO_DATA_BIN,
      with({"PORTICO_GRPC_ADDR=" + addr(ports_.data_grpc),
            "PORTICO_ADMIN_ADDR=" + addr(ports_.data_admin), "PORTICO_DATABASE_URL=" + data_db,
            "PORTICO_USERS_TARGET=" + addr(ports_.users_grpc)}),
      dir_ + "/data.log");
  gateway_ = std::make_unique<Process>(
      "gateway", PORTICO_GATEWAY_BIN,
      with({"PORTICO_HTTP_ADDR=" + addr(ports_.http),
            "PORTICO_ADMIN_ADDR=" + addr(ports_.gateway_admin),
            "PORTICO_USERS_TARGET=" + addr(ports_.users_grpc),
            "PORTICO_DATA_TARGET=" + addr(ports_.data_grpc)}),
      dir_ + "/gateway.log");
  for (auto port : {ports_.users_admin, ports_.data_admin, ports_.gateway_admin}) {
    if (!WaitForHttp200(port, "/readyz", 60000)) {
      throw std::runtime_error("the stack did not become ready:\n" + Logs());
    }
  }
}

Stack::~Stack() {
  if (gateway_) gateway_->Stop();
  if (data_) data_->Stop();
  if (users_) users_->Stop();
  std::error_code ec;
  std::filesystem::remove_all(dir_, ec);
}

std::string Stack::Logs() const {
  std::string out;
  for (const Process* p : {users_.get(), data_.get(), gateway_.get()}) {
    if (p) out += "----- " + p->name() + " -----\n" + p->Log();
  }
  return out;
}

}  // namespace portico::testing
