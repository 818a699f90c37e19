#pragma once
// weft/weft.hpp: everything.

#include "weft/blocking.hpp"
#include "weft/bufio.hpp"
#include "weft/chan.hpp"
#include "weft/context.hpp"
#include "weft/debug.hpp"
#include "weft/detail/cxx20.hpp"
#include "weft/error.hpp"
#include "weft/group.hpp"
#include "weft/net.hpp"
#include "weft/runtime.hpp"
#include "weft/select.hpp"
#include "weft/signal.hpp"
#include "weft/sync.hpp"
#include "weft/time.hpp"
