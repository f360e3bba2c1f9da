#include "stack.h"

#include <signal.h>
#include <sys/prctl.h>
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
  const pid_t parent = getpid();
  // fork + exec rather than posix_spawn: the child asks the kernel to send it
  // SIGTERM when the test process dies, so a crashed test leaves no servers
  // behind. Only async-signal-safe calls between fork and exec.
  pid_ = fork();
  if (pid_ < 0) throw std::runtime_error("cannot start " + binary);
  if (pid_ == 0) {
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != parent) _exit(127);  // the test died before prctl
    const int fd = open(log_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) _exit(127);
    dup2(fd, 1);
    dup2(fd, 2);
    // The test process may block signals; the server starts with a clean mask.
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    execve(bin.c_str(), argv, envp.data());
    _exit(127);
  }
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

namespace {

// `base` with every NAME=... of `extra` replacing the same NAME there.
std::vector<std::string> Merge(std::vector<std::string> base,
                               const std::vector<std::string>& extra) {
  for (const auto& e : extra) {
    const std::string name = e.substr(0, e.find('=') + 1);
    std::erase_if(base, [&](const std::string& b) { return b.starts_with(name); });
    base.push_back(e);
  }
  return base;
}

}  // namespace

Stack::Stack(StackOptions options) {
  char tmpl[] = "/tmp/portico-e2e-XXXXXX";
  dir_ = mkdtemp(tmpl);
  PgCluster& pg = SharedPgCluster();
  static int counter = 0;
  const std::string suffix = std::to_string(getpid()) + "_" + std::to_string(counter++);
  const std::string users_db = pg.CreateDatabase("e2e_users_" + suffix);
  users_db_ = users_db;
  const std::string data_db = pg.CreateDatabase("e2e_data_" + suffix);
  ports_ = {FreeTcpPort(), FreeTcpPort(), FreeTcpPort(),
            FreeTcpPort(), FreeTcpPort(), FreeTcpPort()};
  auto addr = [](std::uint16_t p) { return "127.0.0.1:" + std::to_string(p); };
  const std::vector<std::string> common = {"PORTICO_LOG_LEVEL=debug", "PORTICO_LOG_FORMAT=json"};
  auto with = [&](std::vector<std::string> env) {
    env.insert(env.end(), common.begin(), common.end());
    return env;
  };
  users_env_ = Merge(
      with({"PORTICO_GRPC_ADDR=" + addr(ports_.users_grpc),
            "PORTICO_ADMIN_ADDR=" + addr(ports_.users_admin), "PORTICO_DATABASE_URL=" + users_db,
            "PORTICO_DATA_TARGET=" + addr(ports_.data_grpc),
            // Cheap hashing keeps the suite fast; production defaults are tested in unit tests.
            "PORTICO_ARGON2_MEMORY=8MiB", "PORTICO_ARGON2_ITERATIONS=1"}),
      options.users_env);
  data_env_ = Merge(with({"PORTICO_GRPC_ADDR=" + addr(ports_.data_grpc),
                          "PORTICO_ADMIN_ADDR=" + addr(ports_.data_admin),
                          "PORTICO_DATABASE_URL=" + data_db,
                          "PORTICO_USERS_TARGET=" + addr(ports_.users_grpc)}),
                    options.data_env);
  StartUsers({});
  data_ = std::make_unique<Process>("data", PORTICO_DATA_BIN, data_env_, dir_ + "/data.log");
  gateway_ = std::make_unique<Process>(
      "gateway", PORTICO_GATEWAY_BIN,
      Merge(with({"PORTICO_HTTP_ADDR=" + addr(ports_.http),
                  "PORTICO_ADMIN_ADDR=" + addr(ports_.gateway_admin),
                  "PORTICO_USERS_TARGET=" + addr(ports_.users_grpc),
                  "PORTICO_DATA_TARGET=" + addr(ports_.data_grpc)}),
            options.gateway_env),
      dir_ + "/gateway.log");
  for (auto port : {ports_.users_admin, ports_.data_admin, ports_.gateway_admin}) {
    WaitReady(port);
  }
}

std::string Stack::UsersBinary() { return PORTICO_USERS_BIN; }

void Stack::StartUsers(const std::vector<std::string>& extra_env) {
  users_ = std::make_unique<Process>("users", PORTICO_USERS_BIN, Merge(users_env_, extra_env),
                                     dir_ + "/users." + std::to_string(restarts_++) + ".log");
}

void Stack::WaitReady(std::uint16_t admin_port) const {
  if (!WaitForHttp200(admin_port, "/readyz", 60000)) {
    throw std::runtime_error("the stack did not become ready:\n" + Logs());
  }
}

void Stack::RestartUsers(const std::vector<std::string>& extra_env) {
  if (const int rc = users_->Stop(); rc != 0) {
    throw std::runtime_error("users exited " + std::to_string(rc) + ":\n" + Logs());
  }
  past_logs_ += "----- users (stopped) -----\n" + users_->Log();
  StartUsers(extra_env);
  WaitReady(ports_.users_admin);
  // The gateway reconnects on its own schedule: wait until it reaches users.
  if (!WaitForHttp200(ports_.http, "/v1/auth/jwks", 60000)) {
    throw std::runtime_error("the gateway does not reach the restarted users service:\n" +
                             Logs());
  }
}

void Stack::StopData() {
  if (const int rc = data_->Stop(); rc != 0) {
    throw std::runtime_error("data exited " + std::to_string(rc) + ":\n" + Logs());
  }
}

void Stack::StartData() {
  past_logs_ += "----- data (stopped) -----\n" + data_->Log();
  data_ = std::make_unique<Process>("data", PORTICO_DATA_BIN, data_env_,
                                    dir_ + "/data." + std::to_string(restarts_++) + ".log");
  WaitReady(ports_.data_admin);
}

Stack::~Stack() {
  if (gateway_) gateway_->Stop();
  if (data_) data_->Stop();
  if (users_) users_->Stop();
  std::error_code ec;
  std::filesystem::remove_all(dir_, ec);
}

std::string Stack::Logs() const {
  std::string out = past_logs_;
  for (const Process* p : {users_.get(), data_.get(), gateway_.get()}) {
    if (p) out += "----- " + p->name() + " -----\n" + p->Log();
  }
  return out;
}

}  // namespace portico::testing
