"""The eBPF program behind ``netkeepalive cgroup``, one instruction at a time.

eBPF is a small virtual machine inside the Linux kernel.  A program is a
list of 8-byte instructions (``struct bpf_insn`` in
``include/uapi/linux/bpf.h``): an opcode byte, a destination and a source
register (4 bits each), a signed 16-bit offset and a signed 32-bit
immediate value.  There are eleven 64-bit registers: ``r0`` holds results
and return values, ``r1``-``r5`` pass arguments to kernel functions
("helpers") and are lost on a call, ``r6``-``r9`` survive calls, and
``r10`` points just past the program's 512-byte stack (read-only).

The kernel checks (verifies) every program before it runs: each memory
access must be in bounds, each pointer that may be NULL must be checked,
and every path must end in ``exit``.

:func:`keepalive_program` builds the one program this project loads: a
``BPF_PROG_TYPE_SOCK_OPS`` program that the kernel runs at events of each
TCP connection of a cgroup; when a connection becomes established it
reads the policy from an array map and applies it with the
``bpf_setsockopt`` helper.  Numbers are from ``include/uapi/linux/bpf.h``.
"""

from __future__ import annotations

import struct
import sys
from typing import Dict, List, Optional, Sequence, Tuple, Union

from .constants import LINUX, Option

__all__ = [
    "POLICY_FIELDS",
    "POLICY_FORMAT",
    "UNSET",
    "keepalive_program",
    "return_one_program",
    "setsockopt_probe_program",
]

# -- opcodes (include/uapi/linux/bpf_common.h and bpf.h) --------------------
# An opcode is a class (low 3 bits) combined with an operation and a source.

_ALU64_MOV_K = 0x07 | 0xB0 | 0x00  # BPF_ALU64 | BPF_MOV | BPF_K: dst = imm
_ALU64_MOV_X = 0x07 | 0xB0 | 0x08  # BPF_ALU64 | BPF_MOV | BPF_X: dst = src
_ALU64_ADD_K = 0x07 | 0x00 | 0x00  # BPF_ALU64 | BPF_ADD | BPF_K: dst += imm
_LDX_W = 0x01 | 0x60 | 0x00  # BPF_LDX | BPF_MEM | BPF_W: dst = *(u32 *)(src + off)
_LDX_DW = 0x01 | 0x60 | 0x18  # BPF_LDX | BPF_MEM | BPF_DW: dst = *(u64 *)(src + off)
_ST_W = 0x02 | 0x60 | 0x00  # BPF_ST | BPF_MEM | BPF_W: *(u32 *)(dst + off) = imm
_STX_W = 0x03 | 0x60 | 0x00  # BPF_STX | BPF_MEM | BPF_W: *(u32 *)(dst + off) = src
_STX_DW = 0x03 | 0x60 | 0x18  # BPF_STX | BPF_MEM | BPF_DW: *(u64 *)(dst + off) = src
_LD_IMM64 = 0x00 | 0x00 | 0x18  # BPF_LD | BPF_IMM | BPF_DW: dst = 64-bit imm (2 slots)
_JMP_JA = 0x05 | 0x00  # BPF_JMP | BPF_JA: goto pc + off
_JMP_JEQ_K = 0x05 | 0x10  # BPF_JMP | BPF_JEQ | BPF_K: if dst == imm goto pc + off
_JMP_JNE_K = 0x05 | 0x50  # BPF_JMP | BPF_JNE | BPF_K: if dst != imm goto pc + off
_JMP_CALL = 0x05 | 0x80  # BPF_JMP | BPF_CALL: r0 = helper imm (r1..r5)
_JMP_EXIT = 0x05 | 0x90  # BPF_JMP | BPF_EXIT: return r0

#: ``src_reg`` of a 64-bit load whose immediate is a map descriptor
#: (``BPF_PSEUDO_MAP_FD``): the kernel swaps in the map itself.
_PSEUDO_MAP_FD = 1

#: Helper numbers (``enum bpf_func_id``, the order of ``__BPF_FUNC_MAPPER``).
_FUNC_MAP_LOOKUP_ELEM = 1
_FUNC_SETSOCKOPT = 49

#: ``enum`` values of ``struct bpf_sock_ops.op``: the connection became
#: established by our ``connect()`` (active) or by a handshake on one of
#: our listening sockets (passive).
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
#: A field holding this is not applied: the connection keeps its value.
UNSET = -1

# -- encoding ----------------------------------------------------------------

_LITTLE = sys.byteorder == "little"


def _insn(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    """One ``struct bpf_insn``; the register nibbles follow the byte order."""
    regs = (src << 4 | dst) if _LITTLE else (dst << 4 | src)
    return struct.pack("=BBhi", code, regs, off, imm)


#: A jump whose offset is resolved by :func:`_assemble`: (opcode, dst, imm, label).
_Jump = Tuple[int, int, int, str]
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
        code, dst, imm, label = item
        out.append(_insn(code, dst=dst, off=labels[label] - (pc + 1), imm=imm))
        pc += 1
    return b"".join(out)


def _goto_if(code: int, reg: int, imm: int, label: str) -> _Jump:
    return (code, reg, imm, label)


# -- the programs ------------------------------------------------------------


def keepalive_program(map_fd: int) -> bytes:
    """The sock_ops program: apply the policy in map *map_fd* on established connections.

    In C it would read::

        int prog(struct bpf_sock_ops *ctx) {
            if (ctx->op == ACTIVE_ESTABLISHED || ctx->op == PASSIVE_ESTABLISHED) {
                s64 *policy = bpf_map_lookup_elem(&map, &(u32){0});
                if (policy)
                    for each field i:
                        if (policy[i] != -1)
                            bpf_setsockopt(ctx, level[i], option[i], &(int){policy[i]}, 4);
            }
            return 1;
        }
    """
    items = _established_policy(map_fd)
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


_R0, _R1, _R2, _R3, _R4, _R5, _R6, _R7, _R10 = 0, 1, 2, 3, 4, 5, 6, 7, 10


def _established_policy(map_fd: int) -> List[_Item]:
    """Go to ``out`` unless a connection became established; else r7 = map entry 0, r6 = ctx."""
    r0, r1, r2, r6, r7, r10 = _R0, _R1, _R2, _R6, _R7, _R10
    return [
        # r6 = r1: keep the context pointer (struct bpf_sock_ops *) where calls keep it.
        _insn(_ALU64_MOV_X, dst=r6, src=r1),
        # r2 = ctx->op: which event of the connection this is.
        _insn(_LDX_W, dst=r2, src=r6, off=_SOCK_OPS_OP),
        # if (r2 == ACTIVE_ESTABLISHED_CB) goto apply: we connected.
        _goto_if(_JMP_JEQ_K, r2, SOCK_OPS_ACTIVE_ESTABLISHED_CB, "apply"),
        # if (r2 != PASSIVE_ESTABLISHED_CB) goto out: any other event is left alone.
        _goto_if(_JMP_JNE_K, r2, SOCK_OPS_PASSIVE_ESTABLISHED_CB, "out"),
        "apply",
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
        # r7 = r0: the entry, kept across the calls that follow.
        _insn(_ALU64_MOV_X, dst=r7, src=r0),
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
        # r0 = 1: sock_ops programs return 1 (the verifier accepts 0 or 1).
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
