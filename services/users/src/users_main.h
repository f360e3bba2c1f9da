#pragma once

namespace portico::users {

/// The whole portico-users process: configuration, database and migrations,
/// keys, gRPC and admin servers, and graceful shutdown. Returns the exit code.
int Main(int argc, char** argv);

}  // namespace portico::users
