// tandem: one binary, one subcommand per part of a deployment.
#include <CLI/CLI.hpp>

int main(int argc, char** argv) {
  CLI::App app{"tandem: highly available PostgreSQL"};
  app.require_subcommand(1);
  CLI11_PARSE(app, argc, argv);
  return 0;
}
