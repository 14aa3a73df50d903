"""Move timing: what the printer will take, by the printer simulator's own planner rules.

The simulator (``firmware_sim/motion.py``) times moves with a planner of
trapezoidal blocks: per-axis feed and acceleration caps, Marlin's junction
deviation, each new block entering at the junction speed (capped by what the
previous block can reach from its entry and by stopping within the new block),
the previous block re-timed to exit at that speed, the newest block planned to
stop.  ``move_durations`` replays exactly that for a host that keeps the planner
full (as our driver does), where the queue depth never changes a time: the only
blocks that do not link are the first one after the planner ran empty (it starts
at once, so the junction after it is 0) and E-only moves.  The result is what
the simulator's virtual clock will show, so the estimate in a Program and the
slicer's time report agree with it.

``MotionLimits`` holds the machine limits (Marlin's defaults, the same as the
simulator's) and applies M201/M203/M204/M205 the way the firmware does.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from numba import njit

from .model import PlanError
from .motion_limits import (  # the kernel's limits table: columns as MotionLimits.row() lays them out
    _ACC, _COLUMNS, _FEED, _JD, _PRINT, _RETRACT, _TRAVEL, EXTRUDE_MAXLENGTH, MotionLimits)

def move_durations(delta: np.ndarray, feedrate: np.ndarray, limits: MotionLimits | Sequence[MotionLimits],
                   accel: np.ndarray | None = None, *, limits_index: np.ndarray | None = None,
                   path_length: np.ndarray | None = None, restart: np.ndarray | None = None) -> np.ndarray:
    """Seconds each move takes on the machine (the simulator's planner, planner kept full).

    ``delta``: (n, 4) X Y Z E mm per move; ``feedrate``: (n,) mm/s, > 0.
    ``limits``: one MotionLimits, or a sequence with ``limits_index`` (n,) choosing the one
    in force for each move (M201/M203/M204/M205 in a program).
    ``accel``: (n,) base acceleration per move, replacing the print/travel/retract choice
    (still capped by the per-axis maxima).
    ``path_length``: (n,) mm, >= 0 replaces the straight XYZ length (arcs), < 0 keeps it.
    ``restart``: (n,) bool, the planner has run empty before this move (dwell, homing,
    M400, heat-and-wait): it starts from rest and does not link to the move before.
    Moves the firmware drops (under 1e-6 mm on every axis) take 0 s and do not break a chain.
    """
    delta = np.ascontiguousarray(delta, dtype=np.float64)
    n = len(delta)
    if delta.ndim != 2 or delta.shape[1] != 4:
        raise PlanError(f"move deltas must be (n, 4) X Y Z E, got shape {delta.shape}")
    feedrate = _per_move(feedrate, n, "feedrate")
    bad = np.flatnonzero(~(feedrate > 0) | ~np.isfinite(feedrate))
    if len(bad):
        raise PlanError(f"move {bad[0]}: feedrate must be a positive number of mm/s, got {feedrate[bad[0]]!r}")
    if not np.isfinite(delta).all():
        raise PlanError(f"move {np.flatnonzero(~np.isfinite(delta).all(axis=1))[0]}: delta is not finite")
    if isinstance(limits, MotionLimits):
        limits = (limits,)
    table = np.array([lim.row() for lim in limits]).reshape(-1, _COLUMNS)
    if limits_index is None and len(table) == 1:
        index = np.zeros(n, np.int64)
    else:
        index = _per_move(limits_index, n, "limits_index").astype(np.int64)
        if n and (index.min() < 0 or index.max() >= len(table)):
            raise PlanError(f"limits_index must lie in 0..{len(table) - 1}")
    base = np.zeros(0) if accel is None else _per_move(accel, n, "accel")
    if len(base) and not (base > 0).all():
        raise PlanError(f"move {np.flatnonzero(~(base > 0))[0]}: accel must be > 0")
    length = np.full(n, -1.0) if path_length is None else _per_move(path_length, n, "path_length")
    fresh = np.zeros(n, np.bool_) if restart is None else np.ascontiguousarray(restart, dtype=np.bool_)
    if len(fresh) != n:
        raise PlanError(f"restart needs {n} flags, got {len(fresh)}")
    return _durations(delta, feedrate, table, index, base, length, fresh)


def layer_times(durations: np.ndarray, layer: np.ndarray) -> np.ndarray:
    """Seconds per layer, (L,) for layers 0..max(layer); ops before the first layer (-1) left out."""
    layer = np.asarray(layer)
    keep = layer >= 0
    count = int(layer.max()) + 1 if keep.any() else 0
    return np.bincount(layer[keep], weights=np.asarray(durations, dtype=np.float64)[keep], minlength=count)


def _per_move(values, n: int, name: str) -> np.ndarray:
    if values is None:
        raise PlanError(f"{name} is required with several MotionLimits")
    out = np.ascontiguousarray(values, dtype=np.float64)
    if out.shape != (n,):
        raise PlanError(f"{name} needs one value per move ({n}), got shape {out.shape}")
    return out


@njit(cache=True, nogil=True)
def _trapezoid_time(length, v0, v1, vmax, accel):
    d_acc = (vmax * vmax - v0 * v0) / (2 * accel)
    d_dec = (vmax * vmax - v1 * v1) / (2 * accel)
    if d_acc + d_dec <= length:
        return (vmax - v0) / accel + (vmax - v1) / accel + (length - d_acc - d_dec) / vmax
    peak = math.sqrt((2 * accel * length + v0 * v0 + v1 * v1) / 2)
    return (peak - v0) / accel + (peak - v1) / accel


@njit(cache=True, nogil=True)
def _durations(delta, feedrate, table, index, base_accel, path_length, restart):
    """One pass over the moves; a move's time is final once the next one has linked to it."""
    n = delta.shape[0]
    out = np.zeros(n)
    have_prev = False
    pending_restart = False             # a dropped move passes its restart on
    p_i = 0
    p_len = p_vin = p_vmax = p_acc = 0.0
    p_ux = p_uy = p_uz = 0.0
    p_has_unit = False
    p_started = False
    for i in range(n):
        dx = delta[i, 0]
        dy = delta[i, 1]
        dz = delta[i, 2]
        de = delta[i, 3]
        if abs(de) > EXTRUDE_MAXLENGTH:
            de = 0.0
        row = index[i]
        pending_restart = pending_restart or restart[i]
        chord = math.sqrt(dx * dx + dy * dy + dz * dz)
        length = path_length[i] if path_length[i] >= 0 else chord
        if length < 1e-6:
            length = abs(de)
            if length < 1e-6:
                continue                    # the firmware plans nothing
            acc = table[row, _RETRACT]
            has_unit = False
        else:
            acc = table[row, _PRINT] if de != 0.0 else table[row, _TRAVEL]
            has_unit = chord >= 1e-6
        if base_accel.shape[0]:
            acc = base_accel[i]
        vmax = feedrate[i]
        for k in range(4):
            d = abs(de) if k == 3 else abs(delta[i, k])
            if d > 1e-9:
                vmax = min(vmax, table[row, _FEED + k] * length / d)
                acc = min(acc, table[row, _ACC + k] * length / d)
        ux = uy = uz = 0.0
        if has_unit:
            ux = dx / chord
            uy = dy / chord
            uz = dz / chord
        v_in = 0.0
        started = True
        if have_prev and not pending_restart:
            started = False
            if p_has_unit and has_unit and not p_started:
                v_in = _junction_speed(p_ux, p_uy, p_uz, ux, uy, uz, p_vmax, vmax, p_acc, acc,
                                       table[row, _JD])
                v_in = min(v_in, math.sqrt(p_vin * p_vin + 2 * p_acc * p_len),
                           math.sqrt(2 * acc * length))
        if have_prev:
            out[p_i] = _trapezoid_time(p_len, p_vin, v_in, p_vmax, p_acc)
        have_prev = True
        pending_restart = False
        p_i = i
        p_len = length
        p_vin = v_in
        p_vmax = vmax
        p_acc = acc
        p_ux = ux
        p_uy = uy
        p_uz = uz
        p_has_unit = has_unit
        p_started = started
    if have_prev:
        out[p_i] = _trapezoid_time(p_len, p_vin, 0.0, p_vmax, p_acc)
    return out


@njit(cache=True, nogil=True)
def _junction_speed(ax, ay, az, bx, by, bz, vmax_a, vmax_b, acc_a, acc_b, deviation):
    """Marlin's junction-deviation speed between two XYZ moves."""
    cos_theta = -(ax * bx + ay * by + az * bz)
    vmax = min(vmax_a, vmax_b)
    if cos_theta > 0.999999:
        return 0.0
    if cos_theta < -0.999999:
        return vmax
    sin_half = math.sqrt(0.5 * (1.0 - cos_theta))
    v2 = min(acc_a, acc_b) * deviation * sin_half / (1.0 - sin_half)
    return min(vmax, math.sqrt(v2))
