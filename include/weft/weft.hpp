#pragma once
// weft/weft.hpp: everything.

#include "weft/blocking.hpp"
#include "weft/chan.hpp"
#include "weft/debug.hpp"
#include "weft/net.hpp"
#include "weft/runtime.hpp"
#include "weft/select.hpp"
#include "weft/sync.hpp"
#include "weft/time.hpp"
