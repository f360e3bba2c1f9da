#pragma once
// A throwaway PostgreSQL 15 cluster for tests: initdb in a fresh temporary
// directory, a free port on 127.0.0.1, fsync off. Gone when the object is
// destroyed, or, if the test process dies first, shortly after (a watchdog
// process stops it).

#include <cstdint>
#include <string>
#include <string_view>

namespace portico::testing {

/// A TCP port on 127.0.0.1 that was free a moment ago (bound to port 0 and
/// released). Throws std::runtime_error if no socket can be bound.
std::uint16_t FreeTcpPort();

class PgCluster {
 public:
  /// Runs initdb and starts the server (as the `postgres` user when running
  /// as root). Blocks ~1-2 s. Throws std::runtime_error, with the server's
  /// log, if it cannot start.
  PgCluster();
  /// Stops the server (pg_ctl stop -m fast) and removes its directory.
  ~PgCluster();
  PgCluster(const PgCluster&) = delete;
  PgCluster& operator=(const PgCluster&) = delete;

  /// Creates database `name` ([a-z0-9_]+) and returns its libpq URI,
  /// postgresql://postgres@127.0.0.1:PORT/name. Throws std::runtime_error if
  /// it exists or the server refuses. Thread-safe.
  std::string CreateDatabase(std::string_view name);
  /// Creates a database with a name not used before in this cluster
  /// (`prefix` + "_" + a counter) and returns its URI. Thread-safe.
  std::string CreateUniqueDatabase(std::string_view prefix = "test");
  /// Runs `sql` as the superuser in database `postgres`; throws
  /// std::runtime_error with the server's message on failure. Thread-safe.
  void AdminExec(std::string_view sql);

  /// Stops the server (pg_ctl stop -m fast: sessions are disconnected) but
  /// keeps its data, for tests of what clients do while the database is
  /// down. Throws std::runtime_error if pg_ctl fails. Not thread-safe with
  /// Start().
  void Stop();
  /// Starts a stopped server again on the same port; blocks until it
  /// accepts connections. Throws std::runtime_error, with the server's log,
  /// if it cannot start. No-op if it is running.
  void Start();
  bool running() const { return running_; }

  /// URI of an existing database on this cluster.
  std::string Url(std::string_view database) const;
  /// URI of the `postgres` database (superuser `postgres`, no password).
  std::string AdminUrl() const { return Url("postgres"); }
  std::uint16_t port() const { return port_; }
  /// The cluster's directory (data/ and the server log pg.log inside).
  const std::string& dir() const { return dir_; }

 private:
  void Cleanup();
  std::string dir_;
  std::uint16_t port_ = 0;
  std::string server_options_;  // pg_ctl -o, the same on every start
  int watchdog_fd_ = -1;  // write end of the pipe the watchdog waits on
  bool running_ = false;
};

/// One cluster shared by all tests of the test binary: started on first use,
/// stopped at exit. Tests take their own database from it with
/// CreateUniqueDatabase. Thread-safe.
PgCluster& SharedPgCluster();

}  // namespace portico::testing
