"""The eBPF program behind ``netkeepalive cgroup``, one instruction at a time.

eBPF is a small virtual machine inside the Linux kernel.  A program is a
list of 8-byte instructions (``struct bpf_insn``): an opcode byte, a
destination and a source register (4 bits each), a signed 16-bit offset
and a signed 32-bit immediate.  Of the eleven 64-bit registers, ``r0``
holds results, ``r1``-``r5`` pass arguments to kernel functions
("helpers") and are lost on a call, ``r6``-``r9`` survive calls, and
``r10`` points just past the 512-byte stack (read-only).

The kernel checks (verifies) every program before it runs: each memory
access must be in bounds, each pointer that may be NULL must be checked,
and every path must end in ``exit``.

:func:`keepalive_program` builds the program this project always loads: a
``BPF_PROG_TYPE_SOCK_OPS`` program that the kernel runs at events of each
TCP connection of a cgroup; just before our ``connect()`` sends its SYN,
and when a connection becomes established, it reads the policy from an
array map and applies it with the ``bpf_setsockopt`` helper.
:func:`enforce_program` builds the one ``--enforce`` adds: a
``BPF_PROG_TYPE_CGROUP_SOCKOPT`` program that the kernel runs at every
``setsockopt()`` of the cgroup's processes, before the kernel handles it,
and that lowers a keepalive value above the policy to the policy.
Numbers are from ``include/uapi/linux/bpf.h``.
"""

from __future__ import annotations

import struct
import sys
from typing import Dict, List, Optional, Sequence, Tuple, Union

from ..constants import LINUX, Option

__all__ = [
    "POLICY_FIELDS",
    "POLICY_FORMAT",
    "UNSET",
    "enforce_program",
    "keepalive_program",
    "return_one_program",
    "setsockopt_probe_program",
]

# -- opcodes (include/uapi/linux/bpf_common.h and bpf.h) --------------------
# An opcode is a class (low 3 bits) combined with an operation and a source.

_ALU64_MOV_K = 0x07 | 0xB0 | 0x00  # BPF_ALU64 | BPF_MOV | BPF_K: dst = imm
_ALU64_MOV_X = 0x07 | 0xB0 | 0x08  # BPF_ALU64 | BPF_MOV | BPF_X: dst = src
_ALU64_ADD_K = 0x07 | 0x00 | 0x00  # BPF_ALU64 | BPF_ADD | BPF_K: dst += imm
_ALU64_LSH_K = 0x07 | 0x60 | 0x00  # BPF_ALU64 | BPF_LSH | BPF_K: dst <<= imm
_ALU64_ARSH_K = 0x07 | 0xC0 | 0x00  # BPF_ALU64 | BPF_ARSH | BPF_K: dst s>>= imm (signed)
_LDX_W = 0x01 | 0x60 | 0x00  # BPF_LDX | BPF_MEM | BPF_W: dst = *(u32 *)(src + off)
_LDX_DW = 0x01 | 0x60 | 0x18  # BPF_LDX | BPF_MEM | BPF_DW: dst = *(u64 *)(src + off)
_ST_W = 0x02 | 0x60 | 0x00  # BPF_ST | BPF_MEM | BPF_W: *(u32 *)(dst + off) = imm
_STX_W = 0x03 | 0x60 | 0x00  # BPF_STX | BPF_MEM | BPF_W: *(u32 *)(dst + off) = src
_STX_DW = 0x03 | 0x60 | 0x18  # BPF_STX | BPF_MEM | BPF_DW: *(u64 *)(dst + off) = src
#: BPF_STX | BPF_ATOMIC | BPF_DW with imm BPF_ADD (0): *(u64 *)(dst + off) += src, atomically
#: (the same encoding as the older BPF_XADD, so every kernel with cgroup programs takes it).
_ATOMIC_ADD_DW = 0x03 | 0xC0 | 0x18
_ATOMIC_ADD = 0x00
_LD_IMM64 = 0x00 | 0x00 | 0x18  # BPF_LD | BPF_IMM | BPF_DW: dst = 64-bit imm (2 slots)
_JMP_JA = 0x05 | 0x00  # BPF_JMP | BPF_JA: goto pc + off
_JMP_JEQ_K = 0x05 | 0x10  # BPF_JMP | BPF_JEQ | BPF_K: if dst == imm goto pc + off
_JMP_JNE_K = 0x05 | 0x50  # BPF_JMP | BPF_JNE | BPF_K: if dst != imm goto pc + off
_JMP_JGT_K = 0x05 | 0x20  # BPF_JMP | BPF_JGT | BPF_K: if dst > imm (unsigned) goto pc + off
_JMP_JLT_K = 0x05 | 0xA0  # BPF_JMP | BPF_JLT | BPF_K: if dst < imm (unsigned) goto pc + off
_JMP_JGT_X = 0x05 | 0x20 | 0x08  # BPF_JMP | BPF_JGT | BPF_X: if dst > src (unsigned) goto
_JMP_JSGT_X = 0x05 | 0x60 | 0x08  # BPF_JMP | BPF_JSGT | BPF_X: if dst > src (signed) goto
_JMP_CALL = 0x05 | 0x80  # BPF_JMP | BPF_CALL: r0 = helper imm (r1..r5)
_JMP_EXIT = 0x05 | 0x90  # BPF_JMP | BPF_EXIT: return r0

#: ``src_reg`` of a 64-bit load whose immediate is a map descriptor
#: (``BPF_PSEUDO_MAP_FD``): the kernel swaps in the map itself.
_PSEUDO_MAP_FD = 1

#: Helper numbers (``enum bpf_func_id``, the order of ``__BPF_FUNC_MAPPER``).
_FUNC_MAP_LOOKUP_ELEM = 1
_FUNC_SETSOCKOPT = 49

#: ``enum`` values of ``struct bpf_sock_ops.op``: our ``connect()`` is about
#: to send its SYN (``tcp_connect()`` in net/ipv4/tcp_output.c runs it for
#: every active open, with no ``BPF_SOCK_OPS_*_CB_FLAG`` needed); the
#: connection became established by our ``connect()`` (active) or by a
#: handshake on one of our listening sockets (passive).
SOCK_OPS_TCP_CONNECT_CB = 3
SOCK_OPS_ACTIVE_ESTABLISHED_CB = 4
SOCK_OPS_PASSIVE_ESTABLISHED_CB = 5

#: Byte offset of ``op`` in ``struct bpf_sock_ops`` (the program's context).
_SOCK_OPS_OP = 0

# -- the policy map ----------------------------------------------------------


def _linux(knob: str) -> Option:
    option = LINUX.option(knob)
    assert option is not None  # Linux has every knob
    return option


#: The map's one value: five signed 64-bit numbers, in this order, each in
#: the kernel's unit for Linux (whole seconds for idle and interval):
#: ``(field, option)``, the option's level and number as in
#: :data:`netkeepalive.constants.LINUX`.
POLICY_FIELDS: Tuple[Tuple[str, Option], ...] = (
    ("enabled", _linux("enable")),  # SO_KEEPALIVE
    ("idle", _linux("idle")),  # TCP_KEEPIDLE
    ("interval", _linux("interval")),  # TCP_KEEPINTVL
    ("probes", _linux("probes")),  # TCP_KEEPCNT
    ("user_timeout", _linux("user_timeout")),  # TCP_USER_TIMEOUT
)
#: ``struct.pack`` format of the map value (native byte order).
POLICY_FORMAT = "=" + "q" * len(POLICY_FIELDS)
#: The key of the policy (or probe result) entry of a map: entry 0.
POLICY_KEY = struct.pack("=I", 0)
#: Bytes of that entry: one signed 64-bit number per :data:`POLICY_FIELDS` option.
POLICY_VALUE_SIZE = struct.calcsize(POLICY_FORMAT)
#: A field holding this is not applied: the connection keeps its value.
UNSET = -1

# -- encoding ----------------------------------------------------------------

_LITTLE = sys.byteorder == "little"


def _insn(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    """One ``struct bpf_insn``; the register nibbles follow the byte order."""
    regs = (src << 4 | dst) if _LITTLE else (dst << 4 | src)
    return struct.pack("=BBhi", code, regs, off, imm)


#: A jump whose offset is resolved by :func:`_assemble`: (opcode, dst, src, imm, label).
_Jump = Tuple[int, int, int, int, str]
_Item = Union[bytes, _Jump, str]


def _assemble(items: Sequence[_Item]) -> bytes:
    """Join instructions; a ``str`` item is a label, a tuple a jump to one.

    Jump offsets count instructions from the one after the jump.
    """
    labels: Dict[str, int] = {}
    pc = 0
    for item in items:
        if isinstance(item, str):
            labels[item] = pc
        else:
            pc += len(item) // 8 if isinstance(item, bytes) else 1
    out: List[bytes] = []
    pc = 0
    for item in items:
        if isinstance(item, str):
            continue
        if isinstance(item, bytes):
            out.append(item)
            pc += len(item) // 8
            continue
        code, dst, src, imm, label = item
        out.append(_insn(code, dst=dst, src=src, off=labels[label] - (pc + 1), imm=imm))
        pc += 1
    return b"".join(out)


def _goto_if(code: int, reg: int, imm: int, label: str) -> _Jump:
    return (code, reg, 0, imm, label)


def _goto_if_reg(code: int, reg: int, src: int, label: str) -> _Jump:
    """A jump comparing two registers (a ``BPF_X`` opcode)."""
    return (code, reg, src, 0, label)


def _goto(label: str) -> _Jump:
    return (_JMP_JA, 0, 0, 0, label)


# -- the programs ------------------------------------------------------------


def keepalive_program(map_fd: int) -> bytes:
    """The sock_ops program: apply the policy in map *map_fd* before our SYN and
    on established connections.

    Applying it before the SYN bounds the connect phase: on Linux a
    ``TCP_USER_TIMEOUT`` set then also limits how long SYNs are retried.
    In C it would read::

        int prog(struct bpf_sock_ops *ctx) {
            if (ctx->op == ACTIVE_ESTABLISHED || ctx->op == TCP_CONNECT
                    || ctx->op == PASSIVE_ESTABLISHED) {
                s64 *policy = bpf_map_lookup_elem(&map, &(u32){0});
                if (policy)
                    for each field i:
                        if (policy[i] != -1)
                            bpf_setsockopt(ctx, level[i], option[i], &(int){policy[i]}, 4);
            }
            return 1;
        }
    """
    items = _established_policy(map_fd, connect=True)
    for index, (field, option) in enumerate(POLICY_FIELDS):
        skip = f"after_{field}"
        items += [
            # r1 = policy[index]: this option's value (8 bytes each).
            _insn(_LDX_DW, dst=_R1, src=_R7, off=8 * index),
            # if (r1 == -1) goto after: not part of the policy.
            _goto_if(_JMP_JEQ_K, _R1, UNSET, skip),
            # *(u32 *)(r10 - 8) = r1: the option value as a C int on the stack.
            _insn(_STX_W, dst=_R10, src=_R1, off=-8),
            *_setsockopt(option),
            skip,
        ]
    return _assemble(items + _return_one())


def setsockopt_probe_program(map_fd: int, values: Sequence[int]) -> bytes:
    """A sock_ops program that reports what ``bpf_setsockopt`` makes of each option.

    On an established connection it calls ``bpf_setsockopt`` once per
    :data:`POLICY_FIELDS` option, with ``values[i]``, and stores the result
    (0, or a negative errno) in slot *i* of map *map_fd*'s entry 0.  In C::

        s64 *result = bpf_map_lookup_elem(&map, &(u32){0});
        if (result)
            for each field i:
                result[i] = bpf_setsockopt(ctx, level[i], option[i], &(int){values[i]}, 4);
    """
    items = _established_policy(map_fd)
    for index, (_, option) in enumerate(POLICY_FIELDS):
        items += [
            # *(u32 *)(r10 - 8) = values[index]: the option value on the stack.
            _insn(_ST_W, dst=_R10, off=-8, imm=values[index]),
            *_setsockopt(option),
            # *(u64 *)(r7 + 8 * index) = r0: what bpf_setsockopt returned.
            _insn(_STX_DW, dst=_R7, src=_R0, off=8 * index),
        ]
    return _assemble(items + _return_one())


_R0, _R1, _R2, _R3, _R4, _R5, _R6, _R7, _R8, _R9, _R10 = 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10

# -- the enforcing program ---------------------------------------------------

#: Byte offsets in ``struct bpf_sockopt`` (a cgroup/setsockopt program's
#: context): the socket, the first byte of the option's value and the byte
#: after it (a copy the kernel hands on to its own setsockopt when the
#: program returns 1 with ``optlen`` unchanged), level, name and length.
_SOCKOPT_SK, _SOCKOPT_OPTVAL, _SOCKOPT_OPTVAL_END = 0, 8, 16
_SOCKOPT_LEVEL, _SOCKOPT_OPTNAME, _SOCKOPT_OPTLEN = 24, 28, 32
#: Byte offset of ``protocol`` in ``struct bpf_sock``.
_SOCK_PROTOCOL = 12
_IPPROTO_TCP = 6
#: Values longer than a page are not copied whole for the program; it sets
#: ``optlen`` to 0, "use the caller's buffer", or, for an option of ours, to 4,
#: "use the program's copy, trimmed to one int" (Documentation/bpf/
#: prog_cgroup_sockopt.rst, "Large optval"; 5.3 to 6.4 fail such a call with
#: EFAULT otherwise): the kernel reads one int of a keepalive option however
#: long the buffer, so a long one meets the ceiling too.
_LARGE_OPTVAL = 4096


def enforce_program(policy_fd: int, counter_fd: int) -> bytes:
    """The cgroup/setsockopt program: the policy in map *policy_fd* as a ceiling.

    An application's ``setsockopt`` that turns keepalive off, asks for a
    longer idle time or interval, more probes, or a user timeout of 0 (none)
    or longer than the policy's, has its value replaced by the policy's
    before the kernel applies it; each such write adds one to the 64-bit
    counter in entry 0 of map *counter_fd*.  Shorter times and fewer probes
    pass unchanged, as do options the policy leaves alone, values the kernel
    refuses anyway (below 1, shorter than an int) and every other option.
    In C it would read::

        int prog(struct bpf_sockopt *ctx) {
            if (ctx->optlen > 4096)  /* 4: the kernel reads one int of ours anyway */
                if ((ctx->optlen = ours(ctx->level, ctx->optname) ? 4 : 0) == 0) return 1;
            int *val = ctx->optval;
            if (ctx->optlen < 4 || !tcp_or_mptcp(ctx->sk->protocol)
                    || (void *)(val + 1) > ctx->optval_end) return 1;
            s64 *policy = bpf_map_lookup_elem(&policy_map, &(u32){0});
            if (!policy) return 1;
            s64 v = *val, ceiling;
            if (ctx->level == SOL_SOCKET && ctx->optname == SO_KEEPALIVE) {
                if (policy[enabled] <= 0 || v != 0) return 1;
                ceiling = 1;
            } else if (ctx->level == IPPROTO_TCP && ctx->optname is option i) {
                ceiling = policy[i];
                if (ceiling == -1 || !(v > ceiling || (i == user_timeout && v == 0)))
                    return 1;
            } else
                return 1;
            *val = ceiling;
            u64 *count = bpf_map_lookup_elem(&counter_map, &(u32){0});
            if (count) __sync_fetch_and_add(count, 1);
            return 1;
        }
    """
    r1, r2, r3, r6, r7, r8, r9 = _R1, _R2, _R3, _R6, _R7, _R8, _R9
    items: List[_Item] = [
        # r6 = r1: keep the context pointer (struct bpf_sockopt *) across calls.
        _insn(_ALU64_MOV_X, dst=r6, src=r1),
        # r2 = ctx->optlen: the value's length.
        _insn(_LDX_W, dst=r2, src=r6, off=_SOCKOPT_OPTLEN),
        # if (r2 < 4) goto out: shorter than an int, the kernel refuses it.
        _goto_if(_JMP_JLT_K, r2, 4, "out"),
        # if (r2 <= 4096) goto sized: the program sees the whole value.
        _goto_if(_JMP_JGT_K, r2, _LARGE_OPTVAL, "large"),
        _goto("sized"),
        "large",
        # Longer than a page (see _LARGE_OPTVAL): an option of ours is trimmed
        # to its int (ctx->optlen = 4) and checked as any other; any other
        # uses the caller's buffer (ctx->optlen = 0; stores come from a register).
        _insn(_LDX_W, dst=r2, src=r6, off=_SOCKOPT_LEVEL),
        _insn(_LDX_W, dst=r3, src=r6, off=_SOCKOPT_OPTNAME),
        _goto_if(_JMP_JNE_K, r2, POLICY_FIELDS[0][1].level, "large_tcp"),
        _goto_if(_JMP_JEQ_K, r3, POLICY_FIELDS[0][1].number, "trim"),
        _goto("untouched"),
        "large_tcp",
        _goto_if(_JMP_JNE_K, r2, _IPPROTO_TCP, "untouched"),
        *[_goto_if(_JMP_JEQ_K, r3, option.number, "trim") for _, option in POLICY_FIELDS[1:]],
        "untouched",
        _insn(_ALU64_MOV_K, dst=r1, imm=0),
        _insn(_STX_W, dst=r6, src=r1, off=_SOCKOPT_OPTLEN),
        _goto("out"),
        "trim",
        _insn(_ALU64_MOV_K, dst=r1, imm=4),
        _insn(_STX_W, dst=r6, src=r1, off=_SOCKOPT_OPTLEN),
        "sized",
        # r1 = ctx->sk; r2 = r1->protocol: only TCP sockets are ours, and
        # MPTCP ones (IPPROTO_MPTCP, 262), which hand these options on to
        # their TCP subflows.
        _insn(_LDX_DW, dst=r1, src=r6, off=_SOCKOPT_SK),
        _insn(_LDX_W, dst=r2, src=r1, off=_SOCK_PROTOCOL),
        _goto_if(_JMP_JEQ_K, r2, _IPPROTO_TCP, "tcp"),
        _goto_if(_JMP_JNE_K, r2, 262, "out"),
        "tcp",
        # r8 = ctx->optval; r2 = ctx->optval_end.
        _insn(_LDX_DW, dst=r8, src=r6, off=_SOCKOPT_OPTVAL),
        _insn(_LDX_DW, dst=r2, src=r6, off=_SOCKOPT_OPTVAL_END),
        # r3 = r8 + 4; if (r3 > r2) goto out: the bounds check the verifier
        # needs before the int at r8 may be read or written.
        _insn(_ALU64_MOV_X, dst=r3, src=r8),
        _insn(_ALU64_ADD_K, dst=r3, imm=4),
        _goto_if_reg(_JMP_JGT_X, r3, r2, "out"),
        # r0 = the policy (entry 0 of the policy map), or out.
        *_lookup_entry_zero(policy_fd),
        # r7 = r0: the policy, kept across the call that follows.
        _insn(_ALU64_MOV_X, dst=r7, src=_R0),
        # r9 = *(u32 *)r8, then sign-extended (<< 32, s>> 32): the value as a C int.
        _insn(_LDX_W, dst=r9, src=r8),
        _insn(_ALU64_LSH_K, dst=r9, imm=32),
        _insn(_ALU64_ARSH_K, dst=r9, imm=32),
        # r2 = ctx->level; r3 = ctx->optname.
        _insn(_LDX_W, dst=r2, src=r6, off=_SOCKOPT_LEVEL),
        _insn(_LDX_W, dst=r3, src=r6, off=_SOCKOPT_OPTNAME),
    ]
    enabled = POLICY_FIELDS[0][1]
    items += [
        # if (level == SOL_SOCKET) goto socket_level.
        _goto_if(_JMP_JEQ_K, r2, enabled.level, "socket_level"),
        # if (level != IPPROTO_TCP) goto out: no other level is ours.
        _goto_if(_JMP_JNE_K, r2, _IPPROTO_TCP, "out"),
    ]
    for index, (field, option) in enumerate(POLICY_FIELDS[1:], start=1):
        assert option.level == _IPPROTO_TCP
        following = f"not_{field}"
        items += [
            # if (optname != this option) goto the next one.
            _goto_if(_JMP_JNE_K, r3, option.number, following),
            # r1 = policy[index]: the ceiling; -1 (no ceiling) goes out.
            _insn(_LDX_DW, dst=r1, src=r7, off=8 * index),
            _goto_if(_JMP_JEQ_K, r1, UNSET, "out"),
            # if (value > ceiling, signed) goto clamp.
            _goto_if_reg(_JMP_JSGT_X, r9, r1, "clamp"),
        ]
        if field == "user_timeout":
            # if (value == 0) goto clamp: 0 is "no user timeout at all".
            items.append(_goto_if(_JMP_JEQ_K, r9, 0, "clamp"))
        items += [_goto("out"), following]
    items += [
        _goto("out"),
        "socket_level",
        # if (optname != SO_KEEPALIVE) goto out.
        _goto_if(_JMP_JNE_K, r3, enabled.number, "out"),
        # if (value != 0) goto out: turning keepalive on is always fine.
        _goto_if(_JMP_JNE_K, r9, 0, "out"),
        # r1 = policy[enabled]; a policy that does not turn keepalive on has no say.
        _insn(_LDX_DW, dst=r1, src=r7, off=0),
        _goto_if(_JMP_JEQ_K, r1, 0, "out"),
        _goto_if(_JMP_JEQ_K, r1, UNSET, "out"),
        # r1 = 1: keepalive stays on.
        _insn(_ALU64_MOV_K, dst=r1, imm=1),
        "clamp",
        # *(u32 *)r8 = r1: the kernel applies the ceiling instead.
        _insn(_STX_W, dst=r8, src=r1),
        # r0 = the counter (entry 0 of the counter map), or out.
        *_lookup_entry_zero(counter_fd),
        # r1 = 1; lock *(u64 *)r0 += r1: one more clamped write, atomically.
        _insn(_ALU64_MOV_K, dst=r1, imm=1),
        _insn(_ATOMIC_ADD_DW, dst=_R0, src=r1, imm=_ATOMIC_ADD),
    ]
    # out: r0 = 1, "go on" (0 would fail the call with EPERM).
    return _assemble(items + _return_one())


def _established_policy(map_fd: int, connect: bool = False) -> List[_Item]:
    """Go to ``out`` unless a connection became established (or, with *connect*,
    is about to send its SYN); else r7 = map entry 0, r6 = ctx."""
    r1, r2, r6 = _R1, _R2, _R6
    items: List[_Item] = [
        # r6 = r1: keep the context pointer (struct bpf_sock_ops *) where calls keep it.
        _insn(_ALU64_MOV_X, dst=r6, src=r1),
        # r2 = ctx->op: which event of the connection this is.
        _insn(_LDX_W, dst=r2, src=r6, off=_SOCK_OPS_OP),
        # if (r2 == ACTIVE_ESTABLISHED_CB) goto apply: we connected.
        _goto_if(_JMP_JEQ_K, r2, SOCK_OPS_ACTIVE_ESTABLISHED_CB, "apply"),
    ]
    if connect:
        # if (r2 == TCP_CONNECT_CB) goto apply: our connect() is about to send its SYN.
        items.append(_goto_if(_JMP_JEQ_K, r2, SOCK_OPS_TCP_CONNECT_CB, "apply"))
    return [
        *items,
        # if (r2 != PASSIVE_ESTABLISHED_CB) goto out: any other event is left alone.
        _goto_if(_JMP_JNE_K, r2, SOCK_OPS_PASSIVE_ESTABLISHED_CB, "out"),
        "apply",
        *_lookup_entry_zero(map_fd),
        # r7 = r0: the entry, kept across the calls that follow.
        _insn(_ALU64_MOV_X, dst=_R7, src=_R0),
    ]


def _lookup_entry_zero(map_fd: int) -> List[_Item]:
    """``r0 = bpf_map_lookup_elem(map, &(u32){0})``; go to ``out`` if it is NULL."""
    r0, r1, r2, r10 = _R0, _R1, _R2, _R10
    return [
        # *(u32 *)(r10 - 4) = 0: the map key (entry 0) on the stack.
        _insn(_ST_W, dst=r10, off=-4, imm=0),
        # r2 = r10 - 4: second argument, a pointer to the key ...
        _insn(_ALU64_MOV_X, dst=r2, src=r10),
        _insn(_ALU64_ADD_K, dst=r2, imm=-4),
        # r1 = the map: first argument (a 64-bit load taking two slots; the
        # kernel replaces the descriptor number with the map).
        _insn(_LD_IMM64, dst=r1, src=_PSEUDO_MAP_FD, imm=map_fd),
        _insn(0),
        # r0 = bpf_map_lookup_elem(r1, r2): a pointer to the entry, or NULL.
        _insn(_JMP_CALL, imm=_FUNC_MAP_LOOKUP_ELEM),
        # if (r0 == NULL) goto out: the verifier insists on this check.
        _goto_if(_JMP_JEQ_K, r0, 0, "out"),
    ]


def _setsockopt(option: Option) -> List[_Item]:
    """``r0 = bpf_setsockopt(ctx, level, option, r10 - 8, 4)``: the value is on the stack."""
    r1, r2, r3, r4, r5 = _R1, _R2, _R3, _R4, _R5
    return [
        # r1 = ctx: first argument of bpf_setsockopt.
        _insn(_ALU64_MOV_X, dst=r1, src=_R6),
        # r2 = level (SOL_SOCKET or IPPROTO_TCP).
        _insn(_ALU64_MOV_K, dst=r2, imm=option.level),
        # r3 = option number.
        _insn(_ALU64_MOV_K, dst=r3, imm=option.number),
        # r4 = r10 - 8: pointer to the value ...
        _insn(_ALU64_MOV_X, dst=r4, src=_R10),
        _insn(_ALU64_ADD_K, dst=r4, imm=-8),
        # r5 = 4: ... and its size, sizeof(int).
        _insn(_ALU64_MOV_K, dst=r5, imm=4),
        # r0 = bpf_setsockopt(r1, r2, r3, r4, r5).
        _insn(_JMP_CALL, imm=_FUNC_SETSOCKOPT),
    ]


def _return_one() -> List[_Item]:
    return [
        "out",
        # r0 = 1: sock_ops programs return 1 (the verifier accepts 0 or 1);
        # for cgroup/setsockopt, 1 lets the call go on.
        _insn(_ALU64_MOV_K, dst=_R0, imm=1),
        # return r0.
        _insn(_JMP_EXIT),
    ]


def return_one_program() -> bytes:
    """``r0 = 1; exit``: a sock_ops program that does nothing."""
    return _insn(_ALU64_MOV_K, dst=0, imm=1) + _insn(_JMP_EXIT)


def policy_value(values: Dict[str, Optional[int]]) -> bytes:
    """The map value for *values* (kernel units; ``None`` = leave alone)."""
    return struct.pack(
        POLICY_FORMAT, *(UNSET if values.get(k) is None else values[k] for k, _ in POLICY_FIELDS)
    )


def policy_from_value(raw: bytes) -> Dict[str, Optional[int]]:
    """The inverse of :func:`policy_value`."""
    numbers = struct.unpack(POLICY_FORMAT, raw[: struct.calcsize(POLICY_FORMAT)])
    return {k: (None if n == UNSET else n) for (k, _), n in zip(POLICY_FIELDS, numbers)}
