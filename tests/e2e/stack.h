#pragma once
// The real Portico binaries started as child processes on free ports against
// a throwaway PostgreSQL, for end-to-end tests that talk to them from outside.

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace portico::testing {

/// A child process with its stdout/stderr in a log file.
class Process {
 public:
  Process(std::string name, const std::string& binary, const std::vector<std::string>& env,
          std::string log_path);
  ~Process();
  /// SIGTERM, then waits up to 20 s (then SIGKILL). Returns the exit code, or
  /// 128 + signal if it died of one. Idempotent.
  int Stop();
  bool Running();
  std::string Log() const;
  const std::string& name() const { return name_; }

 private:
  std::string name_;
  std::string log_path_;
  pid_t pid_ = -1;
  int exit_code_ = -1;
};

struct StackPorts {
  std::uint16_t http, gateway_admin, users_grpc, users_admin, data_grpc, data_admin;
};

struct StackOptions {
  /// Extra "NAME=value" variables for the users service (they override the
  /// stack's own).
  std::vector<std::string> users_env;
  /// The same for the data service.
  std::vector<std::string> data_env;
  /// The same for the gateway.
  std::vector<std::string> gateway_env;
};

/// PostgreSQL (shared per test binary) + users + data + gateway.
class Stack {
 public:
  /// Starts everything and waits until every /readyz answers 200; throws
  /// with the logs if something does not come up within 60 s.
  explicit Stack(StackOptions options = {});
  ~Stack();

  /// Stops users (SIGTERM, expecting exit 0: throws otherwise) and starts it
  /// again on the same ports and database, with `extra_env` on top of the
  /// stack's variables; waits until it is ready and the gateway reaches it.
  void RestartUsers(const std::vector<std::string>& extra_env = {});
  /// Stops data (throws unless it exits 0); its ports stay reserved.
  void StopData();
  /// Starts data again on the same ports and database; waits until ready.
  void StartData();

  const StackPorts& ports() const { return ports_; }
  Process& users() { return *users_; }
  Process& data() { return *data_; }
  Process& gateway() { return *gateway_; }
  /// The users service's database (for running its sub-commands).
  const std::string& users_database_url() const { return users_db_; }
  /// Path of the portico-users binary.
  static std::string UsersBinary();
  /// Every process's log, for failure messages and log assertions.
  std::string Logs() const;

 private:
  void StartUsers(const std::vector<std::string>& extra_env);
  void WaitReady(std::uint16_t admin_port) const;

  std::string dir_;
  int restarts_ = 0;
  std::vector<std::string> users_env_, data_env_;
  std::string past_logs_;
  std::string users_db_;  // of processes that were stopped and replaced
  StackPorts ports_{};
  std::unique_ptr<Process> users_, data_, gateway_;
};

}  // namespace portico::testing
