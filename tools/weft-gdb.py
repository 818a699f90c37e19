# weft-gdb.py: gdb commands for weft programs.
#
#   (gdb) source tools/weft-gdb.py
#   (gdb) weft fibers          list every fiber: id, state, wait reason, start site
#   (gdb) weft bt ID           backtrace of fiber ID from its saved context
#
# Works on a live process and on a core file. It reads the runtime's own
# structures by name (libweft is always built with debug information):
# weft::detail::g_sched -> fibers (fiber_pool) -> chunks_[0, published_),
# each chunk an array of fiber records.
#
# `weft bt` on a parked fiber: the fiber's saved context (fiber::ctx.fctx)
# points at the registers Boost.Context's jump_fcontext pushed on the
# fiber's stack (x86-64 SysV: mxcsr/x87 control word, r12, r13, r14, r15,
# rbx, rbp, then the return address). A gdb unwinder presents that context
# as the caller of the current frame and gdb unwinds the rest as usual, so
# the same command works on a live process and on a core file.

import gdb
import gdb.unwinder

# Display text by enumerator name. The values come from the program's debug
# information (_enum), so only the names must stay in step with
# weft::detail::fiber_state (runtime/fiber.hpp) and weft::detail::wait_reason
# (include/weft/detail/park.hpp); the texts match runtime/debug.cpp's.
STATE_NAMES = {"free", "runnable", "running", "parked", "dead"}
REASON_TEXT = {
    "none": "parked", "chan_send": "chan send", "chan_recv": "chan recv", "select": "select",
    "select_forever": "select (no cases)", "mutex": "mutex", "cond": "condition_variable",
    "wait_group": "wait_group", "sleep": "sleep", "netpoll_read": "netpoll read",
    "netpoll_write": "netpoll write", "blocking_call": "blocking",
}


def _enum(type_name, known):
    """value -> enumerator name of an enum, from debug information. Warns
    (the gdb_extension test fails on it) when the enum and `known` differ."""
    t = gdb.lookup_type(type_name).strip_typedefs()
    names = {int(fl.enumval): fl.name.split("::")[-1] for fl in t.fields()}
    if set(names.values()) != set(known):
        print("weft: enum tables out of step with %s: the program has %s, weft-gdb.py has %s"
              % (type_name, sorted(names.values()), sorted(known)))
    return names


_ENUMS = {}  # cached per program: cleared when gdb loads another objfile
gdb.events.new_objfile.connect(lambda _event: _ENUMS.clear())


def _state_name(v):
    if "state" not in _ENUMS:
        _ENUMS["state"] = _enum("weft::detail::fiber_state", STATE_NAMES)
    return _ENUMS["state"].get(v, str(v))


def _reason_name(v):
    if "reason" not in _ENUMS:
        _ENUMS["reason"] = _enum("weft::detail::wait_reason", REASON_TEXT)
    return _ENUMS["reason"].get(v, str(v))


def _atomic(v):
    """The value inside a libstdc++ std::atomic<T>."""
    for path in (("_M_i",), ("_M_b", "_M_p"), ("_M_base", "_M_i")):
        try:
            x = v
            for p in path:
                x = x[p]
            return x
        except gdb.error:
            continue
    return v


def _sched():
    s = gdb.parse_and_eval("weft::detail::g_sched")
    if int(s) == 0:
        raise gdb.GdbError("weft: no runtime running (weft::detail::g_sched is null)")
    return s.dereference()


def _records():
    s = _sched()
    pool = s["fibers"]
    n = int(_atomic(pool["published_"]))
    chunks = pool["chunks_"]
    fiber_t = gdb.lookup_type("weft::detail::fiber")
    per_chunk = int(gdb.parse_and_eval("weft::detail::fiber_pool::chunk_bytes")) // fiber_t.sizeof
    for c in range(n):
        base = chunks[c]
        for i in range(per_chunk):
            yield base[i]


def _live(f):
    st = int(_atomic(f["state"]))
    return _state_name(st) not in ("free", "dead"), st


def _describe(f, st):
    state = _state_name(st)
    reason = _reason_name(int(_atomic(f["reason"])))
    if state == "running" and reason == "blocking_call":
        return "blocking"
    if state != "parked":
        return state
    text = REASON_TEXT.get(reason, reason)
    obj = int(_atomic(f["wait_obj"]))
    note = int(_atomic(f["wait_note"]))
    if text.startswith("netpoll"):
        return "%s fd %d" % (text, note)
    if text == "select":
        return "select (%d cases)" % note
    if text == "sleep":
        return "sleep"  # the deadline is in steady_clock ns: see dump_fibers for "+N ms"
    if obj:
        return "%s 0x%x" % (text, obj)
    return text


def _site(f):
    file_ptr = _atomic(f["file"])
    try:
        path = file_ptr.string() if int(file_ptr) else "?"
    except gdb.error:
        path = "?"
    return "%s:%d" % (path, int(_atomic(f["line"])))


def _find(fid):
    for f in _records():
        live, _ = _live(f)
        if live and int(_atomic(f["id"])) == fid:
            return f
    raise gdb.GdbError("weft: no live fiber %d" % fid)


class WeftPrefix(gdb.Command):
    """weft: inspect fibers of a weft program (weft fibers, weft bt ID)."""

    def __init__(self):
        super().__init__("weft", gdb.COMMAND_USER, prefix=True)


class WeftFibers(gdb.Command):
    """List every live fiber: id, state, wait reason and start site."""

    def __init__(self):
        super().__init__("weft fibers", gdb.COMMAND_USER)

    def invoke(self, arg, from_tty):
        rows = []
        for f in _records():
            live, st = _live(f)
            if not live:
                continue
            main = " (main)" if bool(_atomic(f["is_main"])) else ""
            rows.append((int(_atomic(f["id"])),
                         "fiber %d [%s]: started at %s%s" % (
                             int(_atomic(f["id"])), _describe(f, st), _site(f), main)))
        rows.sort()
        print("weft: %d fibers" % len(rows))
        for _, text in rows:
            print(text)


# Offsets in Boost.Context's saved context (x86-64 SysV, jump_fcontext).
SAVED = [("r12", 0x08), ("r13", 0x10), ("r14", 0x18), ("r15", 0x20), ("rbx", 0x28),
         ("rbp", 0x30)]
RIP_OFF = 0x38
FRAME_SIZE = 0x40


def _saved_context(f):
    st = int(_atomic(f["state"]))
    if _state_name(st) == "running":
        raise gdb.GdbError("weft: fiber is running on a worker thread: use `thread apply all bt`")
    fctx = int(f["ctx"]["fctx"])
    if fctx == 0:
        raise gdb.GdbError("weft: fiber has not started yet (no stack bound)")
    u64 = gdb.lookup_type("unsigned long").pointer()
    def rd(off):
        return int(gdb.Value(fctx + off).cast(u64).dereference())
    regs = {name: rd(off) for name, off in SAVED}
    rip = rd(RIP_OFF)
    rsp = fctx + FRAME_SIZE
    # weft's switch enters jump_fcontext with a hand-pushed return address
    # after stepping 128 bytes over the red zone, and resumes at `add $128,
    # %rsp`, inside the switch's own asm statement: the compiler's unwind
    # info there expects the stack pointer as it was before the step.
    code = bytes(gdb.selected_inferior().read_memory(rip, 7))
    if code == b"\x48\x81\xc4\x80\x00\x00\x00":
        rsp += 128
    return rip, rsp, regs


class _FrameId:
    """A frame id as gdb's unwinder API takes it (gdb 13 has no FrameId class)."""

    def __init__(self, sp, pc):
        self.sp = sp
        self.pc = pc


class _FiberUnwinder(gdb.unwinder.Unwinder):
    """While `weft bt` runs: claims the innermost frame and says its caller
    is the fiber's saved context, so gdb unwinds the fiber's stack from
    there with the normal debug information. Nothing is written to the
    process, so it works on core files too."""

    def __init__(self):
        super().__init__("weft-fiber")
        self.ctx = None

    def __call__(self, pending):
        if self.ctx is None or pending.level() != 0:
            return None
        sp = pending.read_register("rsp")
        pc = pending.read_register("rip")
        info = pending.create_unwind_info(_FrameId(sp, pc))
        rip, rsp, regs = self.ctx
        u64 = gdb.lookup_type("unsigned long")
        info.add_saved_register("rip", gdb.Value(rip).cast(u64))
        info.add_saved_register("rsp", gdb.Value(rsp).cast(u64))
        for name, value in regs.items():
            info.add_saved_register(name, gdb.Value(value).cast(u64))
        return info


_UNWINDER = _FiberUnwinder()
gdb.unwinder.register_unwinder(None, _UNWINDER, replace=True)


def _print_frames(first, limit=64):
    frame, level = first, 0
    while frame is not None and level < limit:
        name = frame.name() or "??"
        sal = frame.find_sal()
        where = ""
        if sal.symtab is not None:
            where = " at %s:%d" % (sal.symtab.filename, sal.line)
        print("#%-2d 0x%016x in %s%s" % (level, frame.pc(), name, where))
        try:
            frame = frame.older()
        except gdb.error:
            break
        level += 1


class WeftBt(gdb.Command):
    """Backtrace of a parked or runnable fiber: weft bt ID."""

    def __init__(self):
        super().__init__("weft bt", gdb.COMMAND_USER)

    def invoke(self, arg, from_tty):
        if not arg.strip():
            raise gdb.GdbError("usage: weft bt ID")
        f = _find(int(arg.strip(), 0))
        ctx = _saved_context(f)
        print("fiber %d [%s]: started at %s" % (int(_atomic(f["id"])),
                                                _describe(f, int(_atomic(f["state"]))), _site(f)))
        _UNWINDER.ctx = ctx
        gdb.invalidate_cached_frames()
        try:
            _print_frames(gdb.newest_frame().older())
        finally:
            _UNWINDER.ctx = None
            gdb.invalidate_cached_frames()


WeftPrefix()
WeftFibers()
WeftBt()
