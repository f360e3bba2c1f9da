#pragma once
// A gRPC server with the standard health service and server reflection, and
// a bounded graceful shutdown. Services use the callback API: gRPC's few
// threads only decode and hand calls to an Executor (rpc::Serve), whose
// workers may block on PostgreSQL (see docs/architecture.md).

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "portico/core/result.h"

namespace grpc {
class Server;
class Service;
}  // namespace grpc

namespace portico::rpc {

struct ServerOptions {
  std::string address = "0.0.0.0:50051";
  std::size_t max_message_bytes = 16 << 20;  // above any page a service builds
};

class Server {
 public:
  explicit Server(ServerOptions options);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  /// Registers a service (not owned; must outlive the server). Before Start.
  void AddService(grpc::Service* service);
  /// Binds and starts serving; health status SERVING. kUnavailable if the
  /// address cannot be bound.
  Status Start();
  /// The bound port (useful with port 0).
  int port() const { return port_; }
  /// Marks every service NOT_SERVING in the health service.
  void SetServing(bool serving);
  /// Stops accepting calls, waits up to `grace` for in-flight ones, then
  /// cancels the rest. Idempotent.
  void Shutdown(std::chrono::milliseconds grace);
  /// Blocks until Shutdown completes.
  void Wait();

 private:
  ServerOptions options_;
  std::vector<grpc::Service*> services_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
};

/// Turns off abseil's mutex deadlock detection, which Debian's abseil keeps
/// on and which costs gRPC (client and server) several percent of its CPU
/// under load. Debug builds keep it as a safety net. Call once at start,
/// before gRPC starts threads.
void TuneGrpcRuntime();

/// Blocks until SIGTERM or SIGINT arrives (the signals are blocked in every
/// thread: call BlockShutdownSignals() first thing in main, before any
/// thread starts). Returns the signal number.
void BlockShutdownSignals();
int WaitForShutdownSignal();

}  // namespace portico::rpc
