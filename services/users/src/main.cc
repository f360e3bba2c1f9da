// portico-users: accounts, sign-in and tokens over gRPC.
#include "users_main.h"

int main(int argc, char** argv) { return portico::users::Main(argc, argv); }
