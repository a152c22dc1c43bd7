"""The link's re-tune step: Alice's transmitter switches to the QL02 settings (node.ml.retune) and
both ends switch the settings of new blocks at the same block boundary.

Exchange (Bob leads, between two blocks, after BLOCK_DONE_ACK): RETUNE (re-tune number n, new
intensities and class probabilities, the measured loss, a fresh nonce) -> RETUNE_ACK (the nonce,
ok with `from_slot`, the first slot Alice's transmitter emits with them, or a refusal's reason).
Both messages change state beyond one block (the settings of every later block), so they travel
outside any block's transcript with a tag of their own, as HELLO does; the nonce echoed in the
ACK ties it to this proposal, so an ACK recorded earlier (another proposal, another session)
is refused even though its tag is authentic. A proposal Eve alters fails its tag: Alice drops it
with an alarm, Bob's wait times out, the re-tune is abandoned and HELLO resynchronises both ends.

The boundary: Alice re-programs her transmitter and raises her sifting high-water mark to
`from_slot - 1` (durably) before she answers; Bob raises his to the same on the ACK. No slot below
`from_slot` is ever sifted again (the detections Bob still holds of those slots are dropped and
counted), so every later block holds only slots sent with the new settings, and its finite-key
length uses them; a partial block at either end is dropped at the boundary (counted in
`aborted`). Both ends persist the re-tune in force (outbox counters), so after a restart each
builds the same settings and the HELLO fingerprint (which fingerprints the settings in force)
matches; reverting to the configured settings at HELLO instead would let any abort, which Eve
can cause, undo a re-tune. Alice is the authority on what her transmitter emits: if the ACK was
lost after she switched, her HELLO_ACK carries her re-tune in force (authenticated, nonce-echoed)
and Bob adopts it; a transmitter that cannot re-take a persisted re-tune after a restart makes
Alice go back to the configured settings as a new re-tune, which Bob adopts the same way.

Policy: the QL02 hysteresis and minimum gain (node.ml.policy), at least `retune_min_blocks`
blocks between two applied re-tunes, and `[link] retune = "apply"` on both nodes (default
"advise": a re-tune changes the light on the fibre and the bound of every later block, so an
operator turns it on once the link is commissioned and the transmitter can change live).

What Eve learns: nothing secret. The settings are public (Alice announces each slot's class in
sifting, and the intensities are Kerckhoffs-public anyway), and so is the measured loss. Eve
could try to force re-tunes by changing the loss (a tap); that gains her only what the loss change
itself gains her, since the finite-key bound holds for any settings, computed from the statistics
of each block's own slots; the hysteresis and the minimum interval bound how often she can make
the link switch (each switch costs at most the slots in flight at the boundary). After a switch
KM03 takes its reference again under the new settings (its calibration blocks go unscored; the
default minimum interval equals them), so forcing re-tunes also opens that window no more often
than the interval allows; the key's secrecy rests on the bound and the QBER abort, which act on
every block.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import struct
import time
from dataclasses import dataclass
from typing import Any

from drivers.transmitter import RetunableTransmitter, RetuneRefused
from node.classical import AuthenticationLocked, ClassicalChannelError, Message
from node.classical.messages import BodyError, RetuneAck, RetuneProposal, RetuneSettings
from node.link import protocol as P
from node.link.distill import LinkSettings
from node.link.outbox import Outbox
from postprocessing.errors import ProtocolError
from postprocessing.finitekey import ProtocolSettings

log = logging.getLogger(__name__)


# -- the re-tune in force, persisted ----------------------------------------------------------------


@dataclass(frozen=True)
class RetuneInForce:
    """The settings a link runs (re-tune number 0: the configured ones) and the first slot sent with them."""

    settings: RetuneSettings
    from_slot: int = 0

    def header(self) -> dict[str, Any]:
        """JSON-ready form (HELLO_ACK's `retune`, the status)."""
        return {**self.settings.header(), "from_slot": self.from_slot}

    @classmethod
    def from_header(cls, h: Any) -> RetuneInForce:
        """The re-tune in `h`; ProtocolError naming the field."""
        try:
            settings = RetuneSettings.from_header(h, "HELLO_ACK retune")
        except BodyError as exc:
            raise ProtocolError(str(exc)) from None
        slot = h.get("from_slot")
        if type(slot) is not int or not 0 <= slot < P.MAX_ID:
            raise ProtocolError(f"HELLO_ACK retune: from_slot must be an integer in [0, {P.MAX_ID}]")
        return cls(settings, slot)


def configured(base: LinkSettings) -> RetuneInForce:
    """The configured settings as re-tune 0."""
    return RetuneInForce(RetuneSettings(0, tuple(base.intensities), tuple(base.class_probabilities)))


def settings_in_force(base: LinkSettings, r: RetuneInForce) -> LinkSettings:
    """The link settings with the re-tune's intensities and class probabilities."""
    return dataclasses.replace(
        base, intensities=r.settings.intensities, class_probabilities=r.settings.class_probabilities
    )


def _bits(x: float) -> int:
    return int(struct.unpack("<q", struct.pack("<d", float(x)))[0])


def _float(n: int) -> float:
    return float(struct.unpack("<d", struct.pack("<q", int(n)))[0])


def load(outbox: Outbox, base: LinkSettings) -> RetuneInForce:
    """The re-tune in force persisted for the link (the configured settings when none)."""
    key = f"{base.link_id}:retune"
    n = outbox.get_counter(key, 0)
    if n <= 0:
        return configured(base)
    k = outbox.get_counter(f"{key}:{n}:classes", 0)
    mu = tuple(_float(outbox.get_counter(f"{key}:{n}:mu{i}")) for i in range(k))
    p = tuple(_float(outbox.get_counter(f"{key}:{n}:p{i}")) for i in range(k))
    return RetuneInForce(RetuneSettings(n, mu, p), outbox.get_counter(f"{key}:{n}:from_slot"))


def save(outbox: Outbox, link_id: str, r: RetuneInForce) -> None:
    """Persist the re-tune in force; its number is written last, so a crash midway keeps the previous one."""
    key, n = f"{link_id}:retune", r.settings.retune
    outbox.set_counter(f"{key}:{n}:classes", len(r.settings.intensities))
    for i, (mu, p) in enumerate(zip(r.settings.intensities, r.settings.class_probabilities, strict=True)):
        outbox.set_counter(f"{key}:{n}:mu{i}", _bits(mu))
        outbox.set_counter(f"{key}:{n}:p{i}", _bits(p))
    outbox.set_counter(f"{key}:{n}:from_slot", r.from_slot)
    outbox.set_counter(key, n)


def refusal(base: LinkSettings, s: RetuneSettings) -> str | None:
    """Why this node's config does not take the settings (None: it does)."""
    if base.retune != "apply":
        return f'this node does not apply re-tunes ([link] retune = "{base.retune}"; "apply" turns it on)'
    if len(s.intensities) != base.n_intensities:
        return f"the link has {base.n_intensities} intensity classes, the proposal {len(s.intensities)}"
    if max(s.intensities) > base.retune_max_intensity:
        return f"intensities must not exceed link.retune_max_intensity = {base.retune_max_intensity:g}"
    if min(s.class_probabilities) < base.retune_min_probability:
        return f"class probabilities must be at least link.retune_min_probability = {base.retune_min_probability:g}"
    if base.protocol == "lim2014" and s.intensities[-1] != base.intensities[-1]:
        return f"the vacuum class stays at its configured intensity {base.intensities[-1]:g} (lim2014 bound)"
    try:
        settings_in_force(base, RetuneInForce(s))
    except ValueError as exc:
        return str(exc)
    return None


def describe(old: RetuneSettings, new: RetuneSettings) -> str:
    """'intensities a/b/c -> d/e/f, class probabilities ... -> ...' (public figures only)."""

    def fmt(v: tuple[float, ...]) -> str:
        return "/".join(f"{x:.3g}" for x in v)

    return (
        f"intensities {fmt(old.intensities)} -> {fmt(new.intensities)}, class probabilities "
        f"{fmt(old.class_probabilities)} -> {fmt(new.class_probabilities)}"
    )


class _Step:
    """What both ends keep: the configured and in-force settings, the last re-tune, the counters."""

    def __init__(self, role: Any) -> None:
        self.role = role
        self.base: LinkSettings = role.settings
        self.in_force = load(role.outbox, self.base)
        self.previous: RetuneInForce | None = None
        self.last: dict[str, Any] = {}
        role.counters.setdefault("retunes", 0)
        role.counters.setdefault("retunes_refused", 0)

    def _switch(self, r: RetuneInForce, loss_db: float | None, block: int) -> None:
        """Run `r` from its slot on (persisted first); a partial block is dropped; log and alarm."""
        role, old = self.role, self.in_force.settings
        save(role.outbox, self.base.link_id, r)
        self.previous, self.in_force = self.in_force, r
        role.settings = settings_in_force(self.base, r)
        if role.blocks.pending_bits:  # no block mixes slots sent with two settings
            role.counters["aborted"] += 1
        role.blocks.discard()
        role.counters["retunes"] += 1
        loss = f", measured loss {loss_db:.2f} dB" if loss_db is not None else ""
        text = (
            f"link {self.base.link_id}: re-tune {r.settings.retune} applied from slot {r.from_slot} "
            f"(block {block} on): {describe(old, r.settings)}{loss}"
        )
        log.warning("%s", text)
        role.alarm("warning", text)
        self.last = {
            "retune": r.settings.retune,
            "time": time.time(),
            "block": block,
            "from_slot": r.from_slot,
            "old": old.header(),
            "new": r.settings.header(),
            "loss_db": loss_db,
        }

    def status(self) -> dict[str, Any]:
        """The settings in force and the last re-tune (public figures)."""
        return {"mode": self.base.retune, "in_force": self.in_force.header(), "last_retune": dict(self.last)}


# -- Alice ----------------------------------------------------------------------------------------


class AliceRetune(_Step):
    """Alice's part: answers RETUNE, re-programs the transmitter, re-takes a re-tune after a restart."""

    def __init__(self, alice: Any) -> None:
        super().__init__(alice)
        if self.in_force.settings.retune > 0:
            self._resume()
        alice.settings = settings_in_force(self.base, self.in_force)

    def _resume(self) -> None:
        """After a restart the transmitter emits its configured settings: re-take the re-tune in
        force from a fresh slot, or (when it cannot) go back to the configured ones as a new re-tune."""
        alice, s = self.role, self.in_force.settings
        try:
            slot = self._program(s)
            reverted = None
        except RetuneRefused as exc:
            reverted = str(exc)
            s = RetuneSettings(s.retune + 1, tuple(self.base.intensities), tuple(self.base.class_probabilities))
            slot = alice.slot_hwm + 1
        r = RetuneInForce(s, max(slot, alice.slot_hwm + 1))
        save(alice.outbox, self.base.link_id, r)
        self.previous, self.in_force = self.in_force, r  # Bob still holds the previous: he adopts this at HELLO
        self._raise_hwm(r.from_slot)
        if reverted is not None:
            alice.alarm(
                "warning",
                f"link {self.base.link_id}: the transmitter cannot re-take re-tune {s.retune - 1} after the "
                f"restart ({reverted}); back to the configured settings as re-tune {s.retune}",
            )

    def _program(self, s: RetuneSettings) -> int:
        tx = self.role.transmitter
        if not isinstance(tx, RetunableTransmitter):
            raise RetuneRefused(
                f"the transmitter ({type(tx).__name__}) cannot change its intensities live (no retune method); "
                "the re-tune stays advice"
            )
        tx.retune_limits().check(s.intensities, s.class_probabilities)
        return int(tx.retune(s.intensities, s.class_probabilities))

    def _raise_hwm(self, from_slot: int) -> None:
        alice = self.role
        if from_slot - 1 > alice.slot_hwm:
            alice.slot_hwm = from_slot - 1
            alice.outbox.set_counter(f"{self.base.link_id}:slot_hwm", alice.slot_hwm)

    def on_retune(self, msg: Message) -> list[Message]:
        """Bob's RETUNE: refuse with a reason, or switch and answer with the first slot of the new settings."""
        try:
            proposal = RetuneProposal.decode(msg)
        except BodyError as exc:
            nonce = msg.header.get("nonce")
            if not isinstance(nonce, str) or not 16 <= len(nonce) <= 64:
                raise ProtocolError(f"RETUNE: {exc}") from None
            n = msg.header.get("retune")
            n = n if type(n) is int and 1 <= n < 1 << 31 else 1
            return [RetuneAck(self.base.link_id, nonce, n, False, None, f"malformed proposal: {exc}").message()]
        s = proposal.settings
        reason = None
        if proposal.link_id != self.base.link_id:
            reason = f"the proposal names link {proposal.link_id[:64]!r}, this is {self.base.link_id!r}"
        elif s.retune != self.in_force.settings.retune + 1:
            reason = f"re-tune number {s.retune} does not follow the one in force ({self.in_force.settings.retune})"
        else:
            reason = refusal(self.base, s)
        if reason is None:
            try:
                slot = self._program(s)
            except RetuneRefused as exc:
                reason = str(exc)
        if reason is not None:
            self.role.counters["retunes_refused"] += 1
            self.role.alarm("warning", f"link {self.base.link_id}: re-tune {s.retune} refused: {reason}")
            return [RetuneAck(self.base.link_id, proposal.nonce, s.retune, False, None, reason).message()]
        alice = self.role
        if alice._pending or alice._ready or alice._active:  # a block in progress dies at the boundary
            alice.counters["aborted"] += 1
            for table in (alice._pending, alice._ready, alice._active):
                table.clear()
        r = RetuneInForce(s, max(slot, alice.slot_hwm + 1))
        self._switch(r, proposal.loss_db, alice.blocks.next_block_id)
        self._raise_hwm(r.from_slot)
        return [RetuneAck(self.base.link_id, proposal.nonce, s.retune, True, r.from_slot).message()]

    def peer_behind(self, theirs: Any) -> bool:
        """Whether Bob's HELLO fingerprint is that of the settings before the last re-tune (its ACK was lost)."""
        prev = self.previous
        return prev is not None and theirs == settings_in_force(self.base, prev).fingerprint()

    def hello_fields(self) -> dict[str, Any]:
        """What HELLO_ACK adds so a Bob that missed the last re-tune's ACK can adopt it."""
        return {"retune": self.in_force.header()}


# -- Bob ------------------------------------------------------------------------------------------


class BobRetune(_Step):
    """Bob's part: takes the QL02 recommendation, proposes it at a block boundary, switches on the ACK."""

    def __init__(self, bob: Any) -> None:
        super().__init__(bob)
        bob.settings = settings_in_force(self.base, self.in_force)
        self.pending: tuple[ProtocolSettings, float | None] | None = None
        self.blocks_since = 0
        bob.counters.setdefault("retune_dropped_slots", 0)
        retuner = bob.monitor.retuner
        if self.base.retune == "off":
            bob.monitor.retuner = None
        elif retuner is not None:
            retuner.settings = bob.settings
            if self.base.retune == "apply":
                retuner.distribute = self.recommend

    def recommend(self, tuned: ProtocolSettings) -> None:
        """The QL02 policy re-tuned (past its hysteresis and minimum gain): propose at the next boundary."""
        policy = self.role.monitor.retuner.policy if self.role.monitor.retuner is not None else None
        self.pending = (tuned, getattr(policy, "tuned_loss_db", None))

    def after_block(self) -> None:
        """Called after each block (distilled, left without key, or aborted and resynchronised): both
        ends are between blocks, so a re-tune proposed now falls on a block boundary."""
        self.blocks_since += 1
        if self.pending is None or self.blocks_since < self.base.retune_min_blocks or self.role.blocks.pending_bits:
            return
        tuned, loss_db = self.pending
        self.pending = None
        n = self.in_force.settings.retune + 1
        s = RetuneSettings(n, tuple(tuned.intensities), tuple(tuned.probabilities))
        reason = refusal(self.base, s)
        if reason is not None:
            self._refused(n, f"Bob's config: {reason}")
            return
        try:
            self._propose(s, loss_db)
        except AuthenticationLocked:
            raise
        except (ProtocolError, ClassicalChannelError) as exc:
            self.role.alarm("major", f"link {self.base.link_id}: re-tune {n} failed: {exc}; resynchronising")
            self._restore_policy()
            self.role._drain()
            try:
                self.role.hello()  # adopts Alice's re-tune if she switched before her answer was lost
            except AuthenticationLocked:
                raise
            except (ProtocolError, ClassicalChannelError) as exc2:
                log.warning("link %s: resynchronising after re-tune %d failed: %s", self.base.link_id, n, exc2)

    def _propose(self, s: RetuneSettings, loss_db: float | None) -> None:
        bob = self.role
        nonce = os.urandom(16).hex()  # public and random: it only dates the answer
        bob.channel.send(RetuneProposal(self.base.link_id, nonce, s, max(0.0, loss_db or 0.0)).message())
        reply = bob.channel.recv(timeout=self.base.timeout_s)
        P.expect(reply, P.RETUNE_ACK, 0)
        P.require_verified(reply)
        try:
            ack = RetuneAck.decode(reply)
        except BodyError as exc:
            raise ProtocolError(str(exc)) from None
        if ack.nonce != nonce:
            raise ProtocolError("RETUNE_ACK does not echo this proposal's nonce: replayed")
        if ack.retune != s.retune or ack.link_id != self.base.link_id:
            raise ProtocolError(f"RETUNE_ACK answers re-tune {ack.retune} of {ack.link_id[:64]!r}, not {s.retune}")
        if not ack.ok:
            self._refused(s.retune, f"Alice: {ack.reason}")
            return
        assert ack.from_slot is not None
        self._adopt(RetuneInForce(s, ack.from_slot), loss_db)

    def _adopt(self, r: RetuneInForce, loss_db: float | None) -> None:
        bob = self.role
        last = max(bob.monitor.last_slot if bob.monitor.last_slot is not None else -1, bob.slot_hwm)
        bob.counters["retune_dropped_slots"] += max(0, r.from_slot - 1 - last)  # sent before the switch, never sifted
        bob.monitor.discard_block()
        self._switch(r, loss_db, bob.blocks.next_block_id)
        bob.slot_hwm = max(bob.slot_hwm, r.from_slot - 1)
        self.blocks_since = 0
        retuner = bob.monitor.retuner
        if retuner is not None:
            retuner.settings = bob.settings  # the loss is measured from the yields of the settings in force
        # KM03's reference was taken under the old settings: take it again under the new ones
        bob.monitor.reference = None
        bob.monitor.calibration = []

    def _refused(self, n: int, reason: str) -> None:
        self.role.counters["retunes_refused"] += 1
        self.role.alarm(
            "warning", f"link {self.base.link_id}: re-tune {n} not applied ({reason}); the settings stay, advice only"
        )
        self._restore_policy()

    def _restore_policy(self) -> None:
        """The policy took its recommendation as tuned: it compares with the settings in force again."""
        retuner = self.role.monitor.retuner
        policy = getattr(retuner, "policy", None)
        if policy is not None:
            s = self.in_force.settings
            policy.settings = dataclasses.replace(
                policy.settings, intensities=s.intensities, probabilities=s.class_probabilities
            )

    def adopt_from_hello(self, reply: Message) -> bool:
        """Alice's HELLO_ACK refused Bob's settings but carries a later re-tune of hers (its ACK was
        lost, or she went back after a restart): adopt it when it explains the difference."""
        try:
            r = RetuneInForce.from_header(reply.header.get("retune"))
        except ProtocolError as exc:
            log.warning("link %s: HELLO_ACK re-tune not usable: %s", self.base.link_id, exc)
            return False
        if r.settings.retune <= self.in_force.settings.retune:
            return False
        if settings_in_force(self.base, r).fingerprint() != reply.header.get("settings"):
            return False
        self._adopt(r, None)
        return True
