// go_move_only_lvalue.cpp: must NOT compile. weft::go copies its arguments
// into the fiber; a move-only lvalue gets one short diagnostic naming the
// fix (std::move), not pages of std::tuple errors (tests/CMakeLists.txt
// checks the compiler's output).
#include <weft/weft.hpp>

struct conn {
  conn() = default;
  conn(conn&&) = default;
  conn(const conn&) = delete;
};

void serve(conn) {}

int main() {
  return weft::run([] {
    conn c;
    weft::go(serve, c);
  });
}
