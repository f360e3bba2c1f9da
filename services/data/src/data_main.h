#pragma once

namespace portico::data {

/// The whole portico-data process: configuration, database and migrations,
/// token keys from users, gRPC and admin servers, graceful shutdown.
int Main(int argc, char** argv);

}  // namespace portico::data
