//! The reactor's deadlines: a hashed timing wheel (Twisted's `TimeoutMixin`,
//! sozu's `timer.rs`).
//!
//! It owns the deadlines of sessions (idle timeout, login grace) and of data
//! connections (PASV accept, transfer stall), each carrying a small `Copy`
//! payload, typically the token of the connection to time out. It never
//! reads the clock: every operation that needs the time takes `now: Instant`
//! from the caller, so the reactor reads the clock once per loop iteration
//! and tests drive a fake clock.
//!
//! Time is cut into ticks of `tick` since `start`; tick `k` hashes to slot
//! `k % slots`. Each slot is an intrusive doubly linked list of indices into
//! a `Vec` slab of nodes with a free list, so `schedule`, `reset` and
//! `cancel` are O(1) and allocate nothing once the slab has grown to the peak
//! number of live timers. A slot mixes timers of different rotations: each
//! node keeps its exact deadline and `poll` compares against it, so a timer
//! due in a later round is simply left where it is. Tick rounding therefore
//! only decides *where* a timer is looked for, never *whether* it is due:
//! a timer never fires before its deadline.
//!
//! `poll(now)` walks the slots of the ticks from the cursor up to `now`'s
//! tick (at most one full rotation, however long the gap), moves every due
//! node to a FIFO `ready` list (so they come out in tick order), and hands
//! them out one per call.
//!
//! `next_deadline` is exact rather than "the next tick": every list keeps the
//! minimum deadline of its nodes, and `next_deadline` takes the minimum over
//! the slots rounded up to its tick boundary, so timers of the same tick
//! share one wake-up. The reactor asks once per loop iteration, so the
//! minimum is cached and recomputed only after it may have risen (a list
//! holding it emptied or recomputed), and the recomputation visits only the
//! non-empty lists, found through a bitmap (a scan of all 513 lists was
//! a few percent of the CPU of a login at concurrency 1). An idle
//! server with one timer 300 s away therefore sleeps 300 s in one go instead
//! of waking once per tick or per rotation. Keeping the minimum exact on
//! removal would cost a walk of the slot in `cancel`; instead a removal that
//! takes a list's minimum only marks the list stale (its minimum stays a
//! lower bound, so at worst the reactor wakes early, never late), and the
//! next walk in `poll` recomputes the stale lists. The reactor polls until
//! `None` before asking for `next_deadline`, so what it sleeps on is exact.
//!
//! # Invariants
//! - A pending node with deadline `d` is either in `ready` or in slot
//!   `max(tick(d), cursor) % slots`. Every walk covers the ticks
//!   `cursor..=max(tick(now), cursor)`, so a node is found by the first
//!   `poll` whose `now >= d`.
//! - `cursor` never decreases; time going backwards only means a walk of the
//!   cursor's slot, and due-ness is always checked against the exact deadline.
//! - A list's `min` is `None` iff the list is empty, and is `<=` every
//!   deadline in it; it is exact unless `stale` is set, and every stale list
//!   is in `stale_lists`, which each walk empties.
//! - A node is free iff its `list` is `FREE`; freeing bumps its generation,
//!   so every `TimerId` issued for it before is stale.
//! - `len` is the number of nodes that are not free.

use std::time::{Duration, Instant};

/// End of a list, or no list.
const NIL: usize = usize::MAX;
/// `Node::list` of a node on the free list.
const FREE: usize = usize::MAX - 1;

/// Handle to a scheduled timer, returned by [`Wheel::schedule`].
///
/// It stays valid until the timer fires or is cancelled; after that it is
/// stale and `reset`/`cancel` ignore it, even once its node is reused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TimerId {
    index: usize,
    generation: u64,
}

#[derive(Clone, Copy, Debug)]
struct Node<T> {
    deadline: Instant,
    payload: Option<T>,
    /// Bumped on every free, so ids of earlier uses no longer match.
    generation: u64,
    /// Slot index, the ready list (`slots`), or `FREE`.
    list: usize,
    prev: usize,
    /// Next in the list, or next on the free list.
    next: usize,
}

#[derive(Clone, Copy, Debug)]
struct List {
    head: usize,
    tail: usize,
    min: Option<Instant>,
    stale: bool,
}

impl List {
    const EMPTY: List = List {
        head: NIL,
        tail: NIL,
        min: None,
        stale: false,
    };
}

/// A hashed timing wheel of deadlines carrying payloads of type `T`.
#[derive(Debug)]
pub struct Wheel<T: Copy> {
    start: Instant,
    tick_nanos: u128,
    slots: usize,
    /// `slots` slot lists, then the ready list at index `slots`.
    lists: Vec<List>,
    nodes: Vec<Node<T>>,
    free: usize,
    len: usize,
    /// Lowest tick that may hold a due timer; the next walk starts there.
    cursor: u64,
    stale_lists: Vec<usize>,
    /// The minimum of every list's `min` when known (`Some`), so that
    /// `next_deadline` — asked once per loop iteration — scans the slots only
    /// after that minimum may have risen, not every time.
    earliest: std::cell::Cell<Option<Option<Instant>>>,
    /// One bit per list, set iff the list has a minimum (is not empty): the
    /// scan visits only those, a few words for an idle wheel.
    nonempty: Vec<u64>,
    #[cfg(test)]
    slots_walked: u64,
}

impl<T: Copy> Wheel<T> {
    /// A wheel of `slots` slots of `tick` each, with tick 0 starting at
    /// `start`, and room for `capacity` timers before the slab grows.
    ///
    /// One rotation (`tick * slots`) should cover the common timeouts, but
    /// longer ones work too, at the cost of being looked at once per
    /// rotation. A zero `tick` or `slots` is taken as 1 ns or 1 slot.
    pub fn new(tick: Duration, slots: usize, start: Instant, capacity: usize) -> Self {
        let slots = slots.max(1);
        Wheel {
            start,
            tick_nanos: tick.as_nanos().max(1),
            slots,
            lists: vec![List::EMPTY; slots + 1],
            nodes: Vec::with_capacity(capacity),
            free: NIL,
            len: 0,
            cursor: 0,
            stale_lists: Vec::with_capacity(slots + 1),
            earliest: std::cell::Cell::new(Some(None)),
            nonempty: vec![0; (slots + 1).div_ceil(64)],
            #[cfg(test)]
            slots_walked: 0,
        }
    }

    /// Arrange for `payload` to come out of [`poll`](Self::poll) once `now`
    /// reaches `deadline`. A deadline in the past fires at the next poll. O(1).
    pub fn schedule(&mut self, deadline: Instant, payload: T) -> TimerId {
        let index = if self.free == NIL {
            self.nodes.push(Node {
                deadline,
                payload: None,
                generation: 0,
                list: NIL,
                prev: NIL,
                next: NIL,
            });
            self.nodes.len() - 1
        } else {
            let index = self.free;
            self.free = self.nodes[index].next;
            index
        };
        let node = &mut self.nodes[index];
        node.deadline = deadline;
        node.payload = Some(payload);
        let id = TimerId {
            index,
            generation: node.generation,
        };
        self.file(index);
        self.len += 1;
        id
    }

    /// Move a pending timer to a new `deadline` (earlier or later), e.g. an
    /// idle timeout restarted by a command. O(1). Returns `false`, and does
    /// nothing, if `id` is stale (the timer fired or was cancelled).
    pub fn reset(&mut self, id: TimerId, deadline: Instant) -> bool {
        if !self.is_live(id) {
            return false;
        }
        self.unlink(id.index);
        self.nodes[id.index].deadline = deadline;
        self.file(id.index);
        true
    }

    /// Remove a pending timer and return its payload. O(1). Returns `None`
    /// if `id` is stale (the timer fired or was cancelled).
    pub fn cancel(&mut self, id: TimerId) -> Option<T> {
        if !self.is_live(id) {
            return None;
        }
        self.unlink(id.index);
        self.release(id.index)
    }

    /// Remove and return one timer whose deadline has passed at `now` (call
    /// repeatedly until `None`).
    ///
    /// Timers come out in tick order (schedule order within a tick) as long
    /// as the wheel is polled at least once per rotation; after a longer gap
    /// all due timers still come out, in slot order, and the catch-up walks
    /// at most one rotation of slots. A `now` earlier than a previous one
    /// fires only timers due at that `now`.
    pub fn poll(&mut self, now: Instant) -> Option<T> {
        let ready = self.slots;
        loop {
            if self.lists[ready].head == NIL {
                self.walk(now);
            }
            let index = self.lists[ready].head;
            if index == NIL {
                return None;
            }
            self.unlink(index);
            if self.nodes[index].deadline <= now {
                return self.release(index);
            }
            // Found due by an earlier poll with a later `now`: time went
            // backwards, so it is not due yet after all.
            self.file(index);
        }
    }

    /// When the reactor must wake next: the earliest deadline rounded up to
    /// its tick boundary, or `None` if no timer is pending. Use it as the
    /// poll timeout, after draining [`poll`](Self::poll). O(1) when the
    /// cached minimum holds, else O(slots / 64 + non-empty lists).
    ///
    /// It is never later than the earliest deadline rounded up to the next
    /// tick. It may be earlier (never later) than that if timers were
    /// cancelled or moved since the last `poll`.
    pub fn next_deadline(&self) -> Option<Instant> {
        let earliest = match self.earliest.get() {
            Some(known) => known,
            None => {
                let mut scanned: Option<Instant> = None;
                for (w, &word) in self.nonempty.iter().enumerate() {
                    let mut bits = word;
                    while bits != 0 {
                        let list = w * 64 + bits.trailing_zeros() as usize;
                        bits &= bits - 1;
                        if let Some(m) = self.lists[list].min {
                            scanned = earlier(scanned, m);
                        }
                    }
                }
                self.earliest.set(Some(scanned));
                scanned
            }
        }?;
        Some(self.round_up(earliest))
    }

    /// Change a list's minimum, keeping `earliest` right: a lower minimum
    /// lowers it; a higher one forgets it if it was this list's.
    fn set_min(&mut self, list: usize, min: Option<Instant>) {
        let old = std::mem::replace(&mut self.lists[list].min, min);
        if min.is_some() != old.is_some() {
            self.nonempty[list / 64] ^= 1 << (list % 64);
        }
        let Some(known) = self.earliest.get() else { return };
        match (min, old) {
            (Some(new), None) => self.earliest.set(Some(earlier(known, new))),
            (Some(new), Some(was)) if new < was => self.earliest.set(Some(earlier(known, new))),
            (_, Some(was)) if known == Some(was) && min != old => self.earliest.set(None),
            _ => {}
        }
    }

    /// Number of pending timers.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no timer is pending.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn is_live(&self, id: TimerId) -> bool {
        self.nodes
            .get(id.index)
            .is_some_and(|node| node.generation == id.generation && node.list != FREE)
    }

    /// Index of the tick containing `t`; instants before `start` are tick 0.
    fn tick_of(&self, t: Instant) -> u64 {
        let nanos = t.saturating_duration_since(self.start).as_nanos();
        u64::try_from(nanos / self.tick_nanos).unwrap_or(u64::MAX)
    }

    /// Put an unlinked node into the slot where the walks will find it: its
    /// deadline's tick, or the cursor's if that tick was already walked.
    fn file(&mut self, index: usize) {
        let tick = self.tick_of(self.nodes[index].deadline).max(self.cursor);
        self.push_back((tick % self.slots as u64) as usize, index);
    }

    /// Move every node due at `now` from the slots of the ticks
    /// `cursor..=tick(now)` to the ready list, then make stale minimums exact.
    fn walk(&mut self, now: Instant) {
        let first = self.cursor;
        let last = self.tick_of(now).max(first);
        // After a gap longer than a rotation every slot is walked once.
        let count = (last - first).saturating_add(1).min(self.slots as u64);
        self.cursor = last;
        let first_slot = first % self.slots as u64;
        for k in 0..count {
            self.walk_slot(((first_slot + k) % self.slots as u64) as usize, now);
        }
        while let Some(list) = self.stale_lists.pop() {
            if self.lists[list].stale {
                let min = self.exact_min(list);
                self.set_min(list, min);
                self.lists[list].stale = false;
            }
        }
    }

    fn walk_slot(&mut self, slot: usize, now: Instant) {
        #[cfg(test)]
        {
            self.slots_walked += 1;
        }
        let ready = self.slots;
        let mut min: Option<Instant> = None;
        let mut index = self.lists[slot].head;
        while index != NIL {
            let Node { next, deadline, .. } = self.nodes[index];
            if deadline <= now {
                self.unlink(index);
                self.push_back(ready, index);
            } else {
                // Not due, so `tick(d) >= tick(now)`: whether or not this
                // walk moved the cursor up to `tick(now)`, the node's slot is
                // still `max(tick(d), cursor) % slots`, so it stays put.
                min = earlier(min, deadline);
            }
            index = next;
        }
        self.set_min(slot, min);
        self.lists[slot].stale = false;
    }

    fn exact_min(&self, list: usize) -> Option<Instant> {
        let mut min: Option<Instant> = None;
        let mut index = self.lists[list].head;
        while index != NIL {
            let deadline = self.nodes[index].deadline;
            min = earlier(min, deadline);
            index = self.nodes[index].next;
        }
        min
    }

    fn push_back(&mut self, list: usize, index: usize) {
        let tail = self.lists[list].tail;
        let node = &mut self.nodes[index];
        node.list = list;
        node.prev = tail;
        node.next = NIL;
        let deadline = node.deadline;
        if tail == NIL {
            self.lists[list].head = index;
        } else {
            self.nodes[tail].next = index;
        }
        self.lists[list].tail = index;
        let min = earlier(self.lists[list].min, deadline);
        self.set_min(list, min);
    }

    /// Take a node out of its list; its `list` field is set by the caller's
    /// next `push_back` or `release`.
    fn unlink(&mut self, index: usize) {
        let Node {
            list,
            prev,
            next,
            deadline,
            ..
        } = self.nodes[index];
        if prev == NIL {
            self.lists[list].head = next;
        } else {
            self.nodes[prev].next = next;
        }
        if next == NIL {
            self.lists[list].tail = prev;
        } else {
            self.nodes[next].prev = prev;
        }
        if self.lists[list].head == NIL {
            self.set_min(list, None);
            self.lists[list].stale = false;
            return;
        }
        let l = &mut self.lists[list];
        if l.min == Some(deadline) && !l.stale {
            // The minimum may have left: a lower bound until the next walk.
            l.stale = true;
            self.stale_lists.push(list);
        }
    }

    /// Put an unlinked node on the free list and hand back its payload.
    fn release(&mut self, index: usize) -> Option<T> {
        let node = &mut self.nodes[index];
        node.generation = node.generation.wrapping_add(1);
        node.list = FREE;
        node.prev = NIL;
        node.next = self.free;
        self.free = index;
        self.len -= 1;
        node.payload.take()
    }

    /// The first tick boundary at or after `t` (`t` itself if it is before
    /// `start` or the boundary is not representable).
    fn round_up(&self, t: Instant) -> Instant {
        let Some(since) = t.checked_duration_since(self.start) else {
            return t;
        };
        let Some(nanos) = since
            .as_nanos()
            .div_ceil(self.tick_nanos)
            .checked_mul(self.tick_nanos)
        else {
            return t;
        };
        let Ok(secs) = u64::try_from(nanos / 1_000_000_000) else {
            return t;
        };
        let sub = (nanos % 1_000_000_000) as u32;
        self.start
            .checked_add(Duration::new(secs, sub))
            .unwrap_or(t)
    }
}

fn earlier(min: Option<Instant>, t: Instant) -> Option<Instant> {
    Some(min.map_or(t, |m| m.min(t)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    const TICK: Duration = Duration::from_millis(100);
    const SLOTS: usize = 512;
    const ROTATION: Duration = Duration::from_millis(100 * SLOTS as u64);

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    fn wheel(start: Instant) -> Wheel<u32> {
        Wheel::new(TICK, SLOTS, start, 16)
    }

    fn drain(w: &mut Wheel<u32>, now: Instant) -> Vec<u32> {
        std::iter::from_fn(|| w.poll(now)).collect()
    }

    /// xorshift64*: deterministic randomness without dependencies.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    #[test]
    fn timer_never_fires_before_its_deadline() {
        let t0 = Instant::now();
        let mut w = wheel(t0);
        let offsets = [
            Duration::from_nanos(1),
            ms(50),
            ms(100),
            ms(137),
            secs(3),
            secs(90),
        ];
        for (i, &off) in offsets.iter().enumerate() {
            w.schedule(t0 + off, i as u32);
        }
        for (i, &off) in offsets.iter().enumerate() {
            assert_eq!(drain(&mut w, t0 + off - Duration::from_nanos(1)), vec![]);
            assert_eq!(drain(&mut w, t0 + off), vec![i as u32]);
        }
        assert!(w.is_empty());
    }

    #[test]
    fn timer_fires_at_the_first_poll_at_or_after_its_deadline() {
        let t0 = Instant::now();
        let mut rng = Rng(7);
        for step_ms in [1, 33, 100, 250] {
            let mut w = wheel(t0);
            let deadline = t0 + Duration::from_nanos(rng.below(10_000_000_000));
            w.schedule(deadline, 1);
            let mut now = t0;
            loop {
                let fired = drain(&mut w, now);
                if now < deadline {
                    assert!(fired.is_empty(), "fired early");
                } else {
                    assert_eq!(fired, vec![1]);
                    assert!(now - deadline < ms(step_ms));
                    break;
                }
                now += ms(step_ms);
            }
        }
    }

    #[test]
    fn past_deadline_fires_at_the_next_poll() {
        let t0 = Instant::now();
        let mut w = wheel(t0 + secs(5));
        assert_eq!(drain(&mut w, t0 + secs(10)), vec![]);
        w.schedule(t0 + secs(1), 1); // before the last poll's tick
        w.schedule(t0, 2); // before the wheel's start
        assert!(w.next_deadline().unwrap() <= t0 + secs(10));
        assert_eq!(drain(&mut w, t0 + secs(10)), vec![1, 2]);
    }

    #[test]
    fn cancelled_timer_returns_its_payload_and_never_fires() {
        let t0 = Instant::now();
        let mut w = wheel(t0);
        let a = w.schedule(t0 + secs(1), 1);
        w.schedule(t0 + secs(1), 2);
        assert_eq!(w.cancel(a), Some(1));
        assert_eq!(w.len(), 1);
        assert_eq!(drain(&mut w, t0 + secs(2)), vec![2]);
    }

    #[test]
    fn reset_to_an_earlier_deadline_fires_earlier() {
        let t0 = Instant::now();
        let mut w = wheel(t0);
        let id = w.schedule(t0 + secs(100), 1);
        assert!(w.reset(id, t0 + ms(1500)));
        assert_eq!(drain(&mut w, t0 + ms(1499)), vec![]);
        assert_eq!(drain(&mut w, t0 + ms(1500)), vec![1]);
    }

    #[test]
    fn reset_to_a_later_deadline_postpones_firing() {
        let t0 = Instant::now();
        let mut w = wheel(t0);
        let id = w.schedule(t0 + secs(2), 1);
        assert!(w.reset(id, t0 + secs(200)));
        assert_eq!(drain(&mut w, t0 + secs(2)), vec![]);
        assert_eq!(drain(&mut w, t0 + secs(200) - ms(1)), vec![]);
        assert_eq!(drain(&mut w, t0 + secs(200)), vec![1]);
    }

    #[test]
    fn reset_of_a_due_but_not_yet_returned_timer_postpones_it() {
        let t0 = Instant::now();
        let mut w = wheel(t0);
        w.schedule(t0 + secs(1), 1);
        let b = w.schedule(t0 + secs(1), 2);
        assert_eq!(w.poll(t0 + secs(1)), Some(1)); // 2 now waits in `ready`
        assert!(w.reset(b, t0 + secs(5)));
        assert_eq!(drain(&mut w, t0 + secs(1)), vec![]);
        assert_eq!(drain(&mut w, t0 + secs(5)), vec![2]);
    }

    #[test]
    fn id_is_stale_after_its_timer_fires() {
        let t0 = Instant::now();
        let mut w = wheel(t0);
        let id = w.schedule(t0 + secs(1), 1);
        assert_eq!(drain(&mut w, t0 + secs(1)), vec![1]);
        assert!(!w.reset(id, t0 + secs(9)));
        assert_eq!(w.cancel(id), None);
        assert!(w.is_empty());
    }

    #[test]
    fn id_is_stale_after_its_timer_is_cancelled() {
        let t0 = Instant::now();
        let mut w = wheel(t0);
        let id = w.schedule(t0 + secs(1), 1);
        assert_eq!(w.cancel(id), Some(1));
        assert_eq!(w.cancel(id), None);
        assert!(!w.reset(id, t0 + secs(9)));
        assert!(w.is_empty());
    }

    #[test]
    fn id_stays_stale_after_its_node_is_reused() {
        let t0 = Instant::now();
        let mut w = wheel(t0);
        let old = w.schedule(t0 + secs(1), 1);
        w.cancel(old);
        let new = w.schedule(t0 + secs(2), 2);
        assert_eq!(old.index, new.index, "node was not reused");
        assert!(!w.reset(old, t0));
        assert_eq!(w.cancel(old), None);
        assert_eq!(w.len(), 1);
        assert_eq!(drain(&mut w, t0 + secs(2)), vec![2]);
        let newer = w.schedule(t0 + secs(3), 3);
        assert_eq!(newer.index, new.index);
        assert_eq!(w.cancel(new), None);
        assert_eq!(w.cancel(newer), Some(3));
    }

    #[test]
    fn freed_nodes_are_reused_so_the_slab_stops_growing() {
        let t0 = Instant::now();
        let mut w = wheel(t0);
        for round in 0..100u64 {
            let ids: Vec<_> = (0..50)
                .map(|i| w.schedule(t0 + secs(round + 1), i))
                .collect();
            for id in ids.into_iter().step_by(2) {
                w.cancel(id);
            }
            assert_eq!(drain(&mut w, t0 + secs(round + 1)).len(), 25);
        }
        assert_eq!(w.nodes.len(), 50);
    }

    #[test]
    fn many_timers_with_the_same_deadline_all_fire_together() {
        let t0 = Instant::now();
        let mut w = wheel(t0);
        for i in 0..1000 {
            w.schedule(t0 + ms(4321), i);
        }
        assert_eq!(drain(&mut w, t0 + ms(4320)), vec![]);
        assert_eq!(drain(&mut w, t0 + ms(4321)), (0..1000).collect::<Vec<_>>());
    }

    #[test]
    fn deadlines_beyond_one_rotation_wait_for_their_round() {
        let t0 = Instant::now();
        let mut w = wheel(t0);
        // Same slot as a 1 s timer, one and three rotations later.
        w.schedule(t0 + secs(1), 0);
        w.schedule(t0 + secs(1) + ROTATION, 1);
        w.schedule(t0 + secs(1) + ROTATION * 3, 3);
        w.schedule(t0 + secs(300), 9);
        let mut fired = vec![];
        let mut now = t0;
        while now <= t0 + secs(400) {
            for p in drain(&mut w, now) {
                fired.push((p, now));
            }
            now += TICK;
        }
        let expect = [
            (0, secs(1)),
            (1, secs(1) + ROTATION),
            (3, secs(1) + ROTATION * 3),
            (9, secs(300)),
        ];
        assert_eq!(fired, expect.map(|(p, d)| (p, t0 + d)));
    }

    #[test]
    fn a_long_gap_fires_all_due_timers_in_at_most_one_rotation_of_work() {
        let t0 = Instant::now();
        let mut w = wheel(t0);
        for i in 0..1000 {
            w.schedule(t0 + ms(10 * i as u64), i);
        }
        w.schedule(t0 + secs(7200), 5000);
        let before = w.slots_walked;
        let mut fired = drain(&mut w, t0 + secs(3600));
        assert!(w.slots_walked - before <= 2 * SLOTS as u64);
        fired.sort_unstable();
        assert_eq!(fired, (0..1000).collect::<Vec<_>>());
        assert_eq!(drain(&mut w, t0 + secs(7200) - ms(1)), vec![]);
        assert_eq!(drain(&mut w, t0 + secs(7200)), vec![5000]);
    }

    #[test]
    fn time_going_backwards_never_fires_early_and_never_panics() {
        let t0 = Instant::now();
        let mut w = wheel(t0);
        for i in 0..4 {
            w.schedule(t0 + secs(9), i);
        }
        assert_eq!(w.poll(t0 + secs(10)), Some(0)); // 1..3 wait in `ready`
        w.schedule(t0 + secs(5), 10); // filed in the cursor's slot
        w.schedule(t0 + secs(12), 12);
        assert_eq!(drain(&mut w, t0 + secs(3)), vec![]);
        assert_eq!(drain(&mut w, t0 + secs(5)), vec![10]);
        assert_eq!(drain(&mut w, t0 + secs(9)), vec![1, 2, 3]);
        assert_eq!(drain(&mut w, t0), vec![]);
        assert_eq!(drain(&mut w, t0 + secs(12)), vec![12]);
    }

    #[test]
    fn degenerate_tick_and_slot_counts_still_work() {
        let t0 = Instant::now();
        let mut w: Wheel<u32> = Wheel::new(Duration::ZERO, 0, t0, 0);
        w.schedule(t0 + ms(5), 1);
        w.schedule(t0 + secs(5), 2);
        assert_eq!(w.next_deadline(), Some(t0 + ms(5)));
        assert_eq!(drain(&mut w, t0 + ms(4)), vec![]);
        assert_eq!(drain(&mut w, t0 + ms(5)), vec![1]);
        assert_eq!(drain(&mut w, t0 + secs(5)), vec![2]);
    }

    #[test]
    fn next_deadline_is_none_without_timers() {
        let t0 = Instant::now();
        let mut w = wheel(t0);
        assert_eq!(w.next_deadline(), None);
        let id = w.schedule(t0 + secs(1), 1);
        w.cancel(id);
        assert_eq!(w.next_deadline(), None);
    }

    #[test]
    fn next_deadline_is_the_earliest_deadline_rounded_up_to_its_tick() {
        let t0 = Instant::now();
        let mut w = wheel(t0);
        w.schedule(t0 + secs(30), 1);
        w.schedule(t0 + ms(1234), 2);
        assert_eq!(w.next_deadline(), Some(t0 + ms(1300)));
        w.schedule(t0 + ms(700), 3);
        assert_eq!(w.next_deadline(), Some(t0 + ms(700)));
    }

    #[test]
    fn next_deadline_forgets_cancelled_and_moved_timers_after_a_poll() {
        let t0 = Instant::now();
        let mut w = wheel(t0);
        let a = w.schedule(t0 + secs(10), 1);
        let b = w.schedule(t0 + secs(10) + ROTATION, 2); // same slot as `a`
        w.schedule(t0 + secs(400), 3);
        w.cancel(a);
        assert_eq!(drain(&mut w, t0 + ms(10)), vec![]);
        assert_eq!(w.next_deadline(), Some(t0 + secs(10) + ROTATION));
        w.reset(b, t0 + secs(500));
        assert_eq!(drain(&mut w, t0 + ms(20)), vec![]);
        assert_eq!(w.next_deadline(), Some(t0 + secs(400)));
    }

    #[test]
    fn next_deadline_follows_cancels_that_empty_slots_without_a_poll() {
        // Slots far apart (several bitmap words), cancelled earliest first:
        // each time the next one is the answer at once, with no poll between.
        let t0 = Instant::now();
        let mut w = wheel(t0);
        let ids: Vec<_> = [2u64, 90, 200, 450].iter().map(|&s| w.schedule(t0 + ms(s * 100), s as u32)).collect();
        assert_eq!(w.next_deadline(), Some(t0 + ms(200)));
        w.cancel(ids[0]);
        assert_eq!(w.next_deadline(), Some(t0 + ms(9000)));
        w.cancel(ids[1]);
        assert_eq!(w.next_deadline(), Some(t0 + ms(20_000)));
        w.reset(ids[3], t0 + ms(150));
        assert_eq!(w.next_deadline(), Some(t0 + ms(200)));
        w.cancel(ids[3]);
        w.cancel(ids[2]);
        assert_eq!(w.next_deadline(), None);
    }

    #[test]
    fn next_deadline_reaches_a_far_timer_in_one_wakeup() {
        let t0 = Instant::now();
        for far in [
            secs(300),
            secs(300) + ms(37),
            secs(3600) + Duration::from_nanos(1),
        ] {
            let mut w = wheel(t0);
            w.schedule(t0 + far, 1);
            let mut wakeups = 0;
            let mut now = t0;
            while !w.is_empty() {
                now = w.next_deadline().unwrap();
                wakeups += 1;
                let fired = drain(&mut w, now);
                assert!(wakeups <= 2, "woke {wakeups} times");
                assert!(fired.is_empty() || now >= t0 + far);
            }
            assert_eq!(wakeups, 1);
            assert!(now - (t0 + far) < TICK);
        }
    }

    #[test]
    fn twenty_thousand_timers_fire_exactly_once_in_deadline_order() {
        let t0 = Instant::now();
        let mut rng = Rng(42);
        let mut w = Wheel::new(TICK, SLOTS, t0, 20_000);
        let deadlines: Vec<Instant> = (0..20_000)
            .map(|_| t0 + Duration::from_nanos(rng.below(600_000_000_000)))
            .collect();
        for (i, &d) in deadlines.iter().enumerate() {
            w.schedule(d, i as u32);
        }
        let tick_of = |d: Instant| (d - t0).as_nanos() / TICK.as_nanos();
        let mut seen = vec![false; deadlines.len()];
        let mut last_tick = 0;
        let mut prev = t0;
        let mut now = t0;
        while !w.is_empty() {
            now += Duration::from_millis(1 + rng.below(250));
            while let Some(i) = w.poll(now) {
                let d = deadlines[i as usize];
                assert!(
                    d <= now && d > prev,
                    "not fired at the first poll after its deadline"
                );
                assert!(
                    !std::mem::replace(&mut seen[i as usize], true),
                    "fired twice"
                );
                assert!(tick_of(d) >= last_tick, "out of order");
                last_tick = tick_of(d);
            }
            prev = now;
        }
        assert!(seen.iter().all(|&s| s));
    }

    #[test]
    fn sleeping_until_next_deadline_never_wakes_for_nothing() {
        let t0 = Instant::now();
        let mut rng = Rng(3);
        let mut w = Wheel::new(TICK, SLOTS, t0, 20_000);
        let mut ids = Vec::new();
        for i in 0..20_000 {
            ids.push(w.schedule(t0 + Duration::from_nanos(rng.below(900_000_000_000)), i));
        }
        // Churn before the first drain: cancels and moves leave stale minimums.
        for id in ids.iter().step_by(3) {
            w.cancel(*id);
        }
        for id in ids.iter().skip(1).step_by(3) {
            w.reset(*id, t0 + Duration::from_nanos(rng.below(900_000_000_000)));
        }
        let mut fired = drain(&mut w, t0).len();
        while let Some(wake) = w.next_deadline() {
            let n = drain(&mut w, wake).len();
            assert!(n > 0, "woke at {:?} for nothing", wake - t0);
            fired += n;
        }
        assert_eq!(fired, 20_000 - 6667);
    }

    /// Random operations against a plain map: what fires is due, and what is
    /// due fires, whatever the order of schedules, cancels, resets and clock
    /// jumps (including backwards).
    #[test]
    fn wheel_agrees_with_a_naive_model_under_random_operations() {
        for (seed, slots) in [(0x1234_5678, 64), (7, 8), (99, 1), (5, 512)] {
            agrees_with_model(seed, slots);
        }
    }

    fn agrees_with_model(seed: u64, slots: usize) {
        let t0 = Instant::now();
        let mut rng = Rng(seed);
        let mut w: Wheel<u32> = Wheel::new(TICK, slots, t0, 0);
        let mut model: HashMap<u32, (TimerId, Instant)> = HashMap::new();
        let mut dead: Vec<TimerId> = Vec::new();
        let mut now = t0;
        let mut next_payload = 0u32;
        let random_deadline = |rng: &mut Rng, now: Instant| {
            let base = now.checked_sub(secs(5)).filter(|&b| b >= t0).unwrap_or(t0);
            base + Duration::from_nanos(rng.below(20_000_000_000))
        };
        let pick = |rng: &mut Rng, model: &HashMap<u32, (TimerId, Instant)>| {
            let mut keys: Vec<_> = model.keys().copied().collect();
            keys.sort_unstable();
            keys[rng.below(keys.len() as u64) as usize]
        };
        for _ in 0..20_000 {
            match rng.below(10) {
                0..=3 => {
                    let d = random_deadline(&mut rng, now);
                    model.insert(next_payload, (w.schedule(d, next_payload), d));
                    next_payload += 1;
                }
                4 if !model.is_empty() => {
                    let p = pick(&mut rng, &model);
                    let (id, _) = model.remove(&p).unwrap();
                    assert_eq!(w.cancel(id), Some(p));
                    dead.push(id);
                }
                5 if !model.is_empty() => {
                    let p = pick(&mut rng, &model);
                    let d = random_deadline(&mut rng, now);
                    assert!(w.reset(model[&p].0, d));
                    model.get_mut(&p).unwrap().1 = d;
                }
                6 if !dead.is_empty() => {
                    let id = dead[rng.below(dead.len() as u64) as usize];
                    assert!(!w.reset(id, now));
                    assert_eq!(w.cancel(id), None);
                }
                7 => {
                    // Take at most one, leaving the rest waiting in `ready`.
                    if let Some(p) = w.poll(now) {
                        let (id, d) = model.remove(&p).expect("fired twice or unknown");
                        assert!(d <= now);
                        dead.push(id);
                    }
                }
                _ => {
                    now = match rng.below(20) {
                        0 => now
                            .checked_sub(secs(rng.below(10)))
                            .filter(|&n| n >= t0)
                            .unwrap_or(t0),
                        1 => now + secs(rng.below(200)),
                        _ => now + ms(rng.below(300)),
                    };
                    while let Some(p) = w.poll(now) {
                        let (id, d) = model.remove(&p).expect("fired twice or unknown");
                        assert!(d <= now, "fired early");
                        dead.push(id);
                    }
                    assert!(model.values().all(|&(_, d)| d > now), "due timer kept");
                    let earliest = model.values().map(|&(_, d)| d).min();
                    match (w.next_deadline(), earliest) {
                        (None, None) => {}
                        (Some(next), Some(e)) => assert!(next >= e && next - e < TICK),
                        other => panic!("next_deadline mismatch: {other:?}"),
                    }
                }
            }
            assert_eq!(w.len(), model.len());
        }
    }
}
