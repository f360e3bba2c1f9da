// portico-data: per-user JSON items in named collections over gRPC.
#include "data_main.h"

int main(int argc, char** argv) { return portico::data::Main(argc, argv); }
