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

/// PostgreSQL (shared per test binary) + users + data + gateway.
class Stack {
 public:
  /// Starts everything and waits until every /readyz answers 200; throws
  /// with the logs if something does not come up within 60 s.
  Stack();
  ~Stack();

  const StackPorts& ports() const { return ports_; }
  Process& users() { return *users_; }
  Process& data() { return *data_; }
  Process& gateway() { return *gateway_; }
  /// Every process's log, for failure messages and log assertions.
  std::string Logs() const;

 private:
  std::string dir_;
  StackPorts ports_{};
  std::unique_ptr<Process> users_, data_, gateway_;
};

}  // namespace portico::testing
