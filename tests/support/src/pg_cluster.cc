#include "portico/testing/pg_cluster.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <pwd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <mutex>
#include <sstream>
#include <stdexcept>
#include <vector>

namespace portico::testing {
namespace {

constexpr const char* kBinDir = "/usr/lib/postgresql/15/bin";

[[noreturn]] void Fail(const std::string& what) { throw std::runtime_error("PgCluster: " + what); }

bool IsRoot() { return ::geteuid() == 0; }

// Runs argv (as `postgres` when we are root), output appended to `log`.
// Returns the exit status (-1 if it could not run).
int Run(std::vector<std::string> argv, const std::string& log) {
  if (IsRoot()) argv.insert(argv.begin(), {"runuser", "-u", "postgres", "--"});
  std::vector<char*> args;
  for (auto& a : argv) args.push_back(a.data());
  args.push_back(nullptr);
  int out = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  int in = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  pid_t pid = ::fork();
  if (pid == 0) {
    // Only async-signal-safe calls between fork and exec.
    if (in >= 0) ::dup2(in, 0);
    if (out >= 0) {
      ::dup2(out, 1);
      ::dup2(out, 2);
    }
    ::execvp(args[0], args.data());
    ::_exit(127);
  }
  if (out >= 0) ::close(out);
  if (in >= 0) ::close(in);
  if (pid < 0) return -1;
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

void GiveToPostgres(const std::string& path) {
  if (!IsRoot()) return;
  passwd* pw = ::getpwnam("postgres");
  if (pw == nullptr) Fail("running as root but there is no `postgres` user");
  if (::chown(path.c_str(), pw->pw_uid, pw->pw_gid) != 0) Fail("chown " + path);
}

bool ValidName(std::string_view name) {
  if (name.empty() || name.size() > 63) return false;
  for (char c : name) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_')) return false;
  }
  return true;
}

}  // namespace

std::uint16_t FreeTcpPort() {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw std::runtime_error("FreeTcpPort: socket failed");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof addr;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    ::close(fd);
    throw std::runtime_error("FreeTcpPort: bind failed");
  }
  ::close(fd);
  return ntohs(addr.sin_port);
}

PgCluster::PgCluster() {
  char tmpl[] = "/tmp/portico-pg-XXXXXX";
  if (::mkdtemp(tmpl) == nullptr) Fail("mkdtemp failed");
  dir_ = tmpl;
  GiveToPostgres(dir_);
  const std::string data = dir_ + "/data";
  const std::string log = dir_ + "/pg.log";
  const std::string setup_log = dir_ + "/setup.log";
  { std::ofstream touch(log); }
  GiveToPostgres(log);

  if (Run({std::string(kBinDir) + "/initdb", "-D", data, "-A", "trust", "-U", "postgres",
           "--no-sync", "-E", "UTF8", "--locale=C"},
          setup_log) != 0) {
    std::string why = ReadFile(setup_log);
    std::filesystem::remove_all(dir_);
    Fail("initdb failed:\n" + why);
  }

  // The port is free when chosen but may be taken before the server binds
  // it; try a few.
  for (int attempt = 0; attempt < 5 && !running_; ++attempt) {
    port_ = FreeTcpPort();
    server_options_ = "-k " + dir_ + " -p " + std::to_string(port_) +
                      " -c listen_addresses=127.0.0.1 -c fsync=off"
                      " -c synchronous_commit=off -c full_page_writes=off"
                      " -c max_connections=200";
    running_ = Run({std::string(kBinDir) + "/pg_ctl", "-D", data, "-l", log, "-w", "-t", "60", "-o",
                    server_options_, "start"},
                   setup_log) == 0;
  }
  if (!running_) {
    std::string why = ReadFile(setup_log) + ReadFile(log);
    std::filesystem::remove_all(dir_);
    Fail("pg_ctl start failed:\n" + why);
  }

  // Watchdog: waits on a pipe whose write end only this process holds. On
  // EOF without the word "done" (this process died), it stops the server
  // and removes the directory. setsid() so that killing the test's process
  // group does not take the watchdog along.
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) == 0) {
    std::string stop = std::string(kBinDir) + "/pg_ctl -D '" + data + "' -m immediate stop";
    if (IsRoot()) stop = "runuser -u postgres -- " + stop;
    std::string script = "read -r word; if [ \"$word\" != done ]; then " + stop +
                         " >/dev/null 2>&1; rm -rf '" + dir_ + "'; fi";
    std::vector<std::string> argv = {"/bin/sh", "-c", script};
    std::vector<char*> args;
    for (auto& a : argv) args.push_back(a.data());
    args.push_back(nullptr);
    int null_out = ::open("/dev/null", O_WRONLY | O_CLOEXEC);
    pid_t pid = ::fork();
    if (pid == 0) {
      ::setsid();
      ::dup2(fds[0], 0);
      if (null_out >= 0) {
        ::dup2(null_out, 1);
        ::dup2(null_out, 2);
      }
      ::execv(args[0], args.data());
      ::_exit(127);
    }
    if (null_out >= 0) ::close(null_out);
    ::close(fds[0]);
    if (pid > 0) {
      watchdog_fd_ = fds[1];
    } else {
      ::close(fds[1]);
    }
  }
}

PgCluster::~PgCluster() { Cleanup(); }

void PgCluster::Stop() {
  if (!running_) return;
  if (Run({std::string(kBinDir) + "/pg_ctl", "-D", dir_ + "/data", "-m", "fast", "-w", "-t",
           "60", "stop"},
          dir_ + "/setup.log") != 0) {
    Fail("pg_ctl stop failed:\n" + ReadFile(dir_ + "/setup.log"));
  }
  running_ = false;
}

void PgCluster::Start() {
  if (running_) return;
  if (Run({std::string(kBinDir) + "/pg_ctl", "-D", dir_ + "/data", "-l", dir_ + "/pg.log", "-w",
           "-t", "60", "-o", server_options_, "start"},
          dir_ + "/setup.log") != 0) {
    Fail("pg_ctl start failed:\n" + ReadFile(dir_ + "/setup.log") + ReadFile(dir_ + "/pg.log"));
  }
  running_ = true;
}

void PgCluster::Cleanup() {
  if (running_) {
    Run({std::string(kBinDir) + "/pg_ctl", "-D", dir_ + "/data", "-m", "fast", "-w", "stop"},
        dir_ + "/setup.log");
    running_ = false;
  }
  if (watchdog_fd_ >= 0) {
    // Tell the watchdog all is handled; it exits (it is not waited for, and
    // as a session leader of its own it is reaped by init).
    (void)!::write(watchdog_fd_, "done\n", 5);
    ::close(watchdog_fd_);
    watchdog_fd_ = -1;
  }
  if (!dir_.empty()) {
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
  }
}

std::string PgCluster::Url(std::string_view database) const {
  return "postgresql://postgres@127.0.0.1:" + std::to_string(port_) + "/" + std::string(database);
}

void PgCluster::AdminExec(std::string_view sql) {
  std::unique_ptr<PGconn, void (*)(PGconn*)> conn(PQconnectdb(AdminUrl().c_str()), PQfinish);
  if (PQstatus(conn.get()) != CONNECTION_OK) {
    Fail("cannot connect: " + std::string(PQerrorMessage(conn.get())));
  }
  std::unique_ptr<PGresult, void (*)(PGresult*)> result(
      PQexec(conn.get(), std::string(sql).c_str()), PQclear);
  auto status = PQresultStatus(result.get());
  if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK) {
    Fail(std::string(sql) + ": " + PQresultErrorMessage(result.get()));
  }
}

std::string PgCluster::CreateDatabase(std::string_view name) {
  if (!ValidName(name)) Fail("bad database name \"" + std::string(name) + "\"");
  AdminExec("CREATE DATABASE " + std::string(name));
  return Url(name);
}

std::string PgCluster::CreateUniqueDatabase(std::string_view prefix) {
  static std::atomic<int> counter{0};
  return CreateDatabase(std::string(prefix) + "_" + std::to_string(++counter));
}

PgCluster& SharedPgCluster() {
  static std::once_flag once;
  static std::unique_ptr<PgCluster> cluster;
  std::call_once(once, [] { cluster = std::make_unique<PgCluster>(); });
  return *cluster;
}

}  // namespace portico::testing
