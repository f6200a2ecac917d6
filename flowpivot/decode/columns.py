"""Pass 2 of a batch: each template's filed records read into STORE_SCHEMA columns, with their
sampling rates, and checked against the plausible time range."""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
import pyarrow as pa

from ..timerange import check_times
from .records import Context, build_batch, sampling_rates
from .state import Buf, DecodeResult, DecoderState, _Group
from .templates import Template


class Reader(DecoderState):
    """Filed data sets to record batches."""

    def _flush(self) -> None:
        if self._sflow.pending():
            self._flush_sflow()
        groups = list(self._groups.values())
        self._groups.clear()  # in place: the set walker holds a reference to this dict
        for g in groups:
            batch = self._read_group(g)
            if batch is not None and batch.num_rows:
                self._batches.append(batch)
                self.stats[g.exporter].flows += batch.num_rows

    def _flush_sflow(self) -> None:
        """The sFlow v5 samples walked since the last flush, as one batch (flowpivot/decode/sflow.py)."""
        batch, flows, no_ip = self._sflow.flush()
        for exporter, n in flows.items():
            self.stats[exporter].flows += n
        for exporter, n in no_ip.items():
            self.stats[exporter].other_records += n
        if batch is not None:
            self._batches.append(batch)

    def _read_group(self, g: _Group) -> pa.RecordBatch | None:
        t = g.template
        bodies: list[Buf] = []
        # counts, export ms, uptime ms, v5 sampling, received ms
        cols: list[list[np.ndarray]] = [[], [], [], [], []]
        # where each set came from (datagram index in the batch, or a label), in parts: read only for a problem
        places: list[Sequence[int | str] | np.ndarray] = []
        if g.sets:
            set_bodies, *per_set, set_places = zip(*g.sets, strict=True)
            bodies.extend(set_bodies)
            places.append(set_places)
            for c, tup in zip(cols, per_set, strict=True):
                c.append(np.asarray(tup, dtype=np.int64))
        for block_bodies, *arrays, block_places in g.blocks:
            bodies.extend(block_bodies)
            places.append(block_places)
            for c, arr in zip(cols, arrays, strict=True):
                c.append(arr)
        counts, export_ms, uptime_ms, v5_sampling, received = (
            np.concatenate(c).astype(np.int64, copy=False) for c in cols
        )
        if t.fixed:
            roles, n = t.read(b"".join(bodies), int(counts.sum()))
        else:
            parts = [t.read(b)[0] for b in bodies]
            roles = {r: np.concatenate([p[r] for p in parts]) for r in parts[0]}
            n = int(counts.sum())
        keep = roles.pop("_sampled_ip", None)
        if keep is not None:  # sampled packet headers: those without an IP packet are no flow
            self.stats[g.exporter].other_records += int(n - keep.sum())
            roles = {r: v[keep] for r, v in roles.items()}
            n = int(keep.sum())
        if n == 0:
            return None
        sampling: np.ndarray | int
        if t.version in (5, 7):
            lo, hi = int(v5_sampling.min()), int(v5_sampling.max())
            sampling = lo if lo == hi else np.repeat(v5_sampling.astype(np.uint64), counts)
        else:
            sampling = self._sampling_for(t, g.exporter, g.port, g.domain, roles, n)
        ctx = Context(counts, export_ms, uptime_ms, g.exporter, g.domain, sampling, keep)
        batch = build_batch(roles, n, t.version, ctx)
        if self._range is None:
            return batch
        return self._check_times(batch, g, counts, received, places, keep)

    def _check_times(
        self, batch: pa.RecordBatch, g: _Group, counts: np.ndarray, received: np.ndarray,
        places: list[Sequence[int | str] | np.ndarray],
        keep: np.ndarray | None,
    ) -> pa.RecordBatch:  # fmt: skip
        """Leave out the records dated outside the plausible range, each a problem naming its datagram."""
        assert self._range is not None
        tr = self._range
        if self._reference_ms is not None:
            lo, hi = tr.bounds(self._reference_ms)
            what = f"the input's time plus {tr.slack_ms / 3_600_000:g} h"
        else:
            if (received <= 0).any():  # no arrival time given (0): now
                received = np.where(received > 0, received, int(time.time() * 1000))
            lo, hi = tr.bounds(int(received.max()))
            what = f"the datagram's arrival plus {tr.slack_ms / 3_600_000:g} h"
        if tr.latest_ms is not None:
            what = ""
        start = batch.column(0).to_numpy(zero_copy_only=False).view(np.int64)
        end = batch.column(1).to_numpy(zero_copy_only=False).view(np.int64)
        if (
            len(start)
            and lo <= min(start.min(), end.min())
            and max(start.max(), end.max()) <= hi
            and (end >= start).all()
        ):
            return batch  # everything plausible and in order: nothing for check_times to do
        batch, check = check_times(batch, lo, hi, what)
        st = self.stats[g.exporter]
        st.end_before_start_repaired += check.repaired
        if not check.rejected:
            return batch
        flat = [p if isinstance(p, str) else int(p) for part in places for p in part]
        set_of = np.repeat(np.arange(len(counts)), counts)
        first = np.cumsum(counts) - counts
        in_set = np.arange(int(counts.sum())) - np.repeat(first, counts)
        if keep is not None:
            set_of, in_set = set_of[keep], in_set[keep]
        for row, reason in check.rejected:
            k = int(set_of[row])
            place = flat[k]
            label = place if isinstance(place, str) else self._label(place)
            st.bad_time += 1
            st.malformed += 1
            self._problem(g.exporter, f"{label}, record {int(in_set[row]) + 1} of its data set", reason)
        return batch

    def _label(self, i: int) -> str:
        """Datagram ``i`` of the current batch, as the caller names it."""
        _, fn, _ = self._cur
        return fn(i) if fn is not None else f"datagram {i + 1} of the batch"

    def _sampling_for(
        self, t: Template, exporter: str, port: int, domain: int, roles: dict[str, np.ndarray], n: int
    ) -> np.ndarray | int:
        """Per record: the rate the record states, else its sampler's, its template's, the exporter's."""
        table = self._sampling.get((exporter, port, t.version, domain))
        if not t.states_sampling:
            fallback = table and (table.get(("t", t.template_id)) or table.get(None))
            if not (table and t.has_sampler_id):
                return fallback or 0  # one rate for every record: no per-record array
        rate = sampling_rates(roles, n)
        if not table:
            return rate
        ids = roles.get("sampler_id", roles.get("selector_id"))
        if ids is not None and (rate == 0).any():
            for sid in np.unique(ids):
                r = table.get(("s", int(sid)))
                if r:
                    rate = np.where((rate == 0) & (ids == sid), np.uint64(r), rate)
        fallback = table.get(("t", t.template_id)) or table.get(None)
        if fallback:
            rate = np.where(rate == 0, np.uint64(fallback), rate)
        return rate

    def _result(self) -> DecodeResult:
        batches, self._batches = self._batches, []
        problems, self._problems = self._problems, []
        if not batches:
            return DecodeResult(None, problems)
        batch = batches[0] if len(batches) == 1 else pa.concat_batches(batches)
        return DecodeResult(batch, problems)
