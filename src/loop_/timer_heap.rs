//! The loop's scheduled timers: a binary min-heap keyed by deadline.
//!
//! asyncio keeps its timers in a `heapq` list and leaves the order of equal deadlines to the heap's
//! shape. To give exactly the same order (equal deadlines, cancellations and compactions included),
//! this heap performs the same sift steps as `heapq` and compares deadlines with `<` only.

pub struct TimerHeap<T> {
    entries: Vec<(f64, T)>,
}

impl<T> Default for TimerHeap<T> {
    fn default() -> Self {
        Self {
            entries: Vec::new(),
        }
    }
}

impl<T> TimerHeap<T> {
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// The earliest entry, if any.
    pub fn peek(&self) -> Option<(f64, &T)> {
        self.entries.first().map(|(when, item)| (*when, item))
    }

    pub fn push(&mut self, when: f64, item: T) {
        self.entries.push((when, item));
        let last = self.entries.len() - 1;
        self.sift_towards_root(0, last);
    }

    pub fn pop(&mut self) -> Option<(f64, T)> {
        let last = self.entries.pop()?;
        if self.entries.is_empty() {
            return Some(last);
        }
        let first = std::mem::replace(&mut self.entries[0], last);
        self.sift_towards_leaves(0);
        Some(first)
    }

    /// Keeps only the entries for which `keep` is true, then rebuilds the heap as `heapq.heapify`
    /// would (the removed entries are handed to `removed`).
    pub fn retain_and_heapify(
        &mut self,
        mut keep: impl FnMut(&T) -> bool,
        mut removed: impl FnMut(T),
    ) {
        let old = std::mem::take(&mut self.entries);
        for (when, item) in old {
            if keep(&item) {
                self.entries.push((when, item));
            } else {
                removed(item);
            }
        }
        for pos in (0..self.entries.len() / 2).rev() {
            self.sift_towards_leaves(pos);
        }
    }

    /// Removes every entry, in storage order.
    pub fn drain(&mut self) -> impl Iterator<Item = (f64, T)> + '_ {
        self.entries.drain(..)
    }

    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.entries.iter().map(|(_, item)| item)
    }

    /// `heapq._siftdown`: moves the entry at `pos` up while it is smaller than its parent.
    fn sift_towards_root(&mut self, start: usize, mut pos: usize) {
        let when = self.entries[pos].0;
        while pos > start {
            let parent = (pos - 1) >> 1;
            if when < self.entries[parent].0 {
                self.entries.swap(pos, parent);
                pos = parent;
            } else {
                break;
            }
        }
    }

    /// `heapq._siftup`: moves the hole at `pos` down to a leaf along the smaller children, then
    /// sifts the displaced entry back up from there.
    fn sift_towards_leaves(&mut self, mut pos: usize) {
        let end = self.entries.len();
        let start = pos;
        let mut child = 2 * pos + 1;
        while child < end {
            let right = child + 1;
            // heapq's `not heap[child] < heap[right]`, which differs from `>=` for NaN.
            #[allow(clippy::neg_cmp_op_on_partial_ord)]
            if right < end && !(self.entries[child].0 < self.entries[right].0) {
                child = right;
            }
            self.entries.swap(pos, child);
            pos = child;
            child = 2 * pos + 1;
        }
        self.sift_towards_root(start, pos);
    }
}

#[cfg(test)]
mod tests {
    use super::TimerHeap;

    fn pop_all(heap: &mut TimerHeap<u32>) -> Vec<u32> {
        std::iter::from_fn(|| heap.pop().map(|(_, id)| id)).collect()
    }

    #[test]
    fn pops_in_deadline_order() {
        let mut heap = TimerHeap::default();
        for (i, when) in [5.0, 1.0, 4.0, 2.0, 3.0].into_iter().enumerate() {
            heap.push(when, i as u32);
        }
        assert_eq!(pop_all(&mut heap), vec![1, 3, 4, 2, 0]);
    }

    #[test]
    fn equal_deadlines_follow_heapq() {
        // What CPython's heapq gives for ten items pushed with the same key and compared on the key
        // only (heapq is not FIFO for equal keys).
        let mut heap = TimerHeap::default();
        for i in 0..10u32 {
            heap.push(1.0, i);
        }
        assert_eq!(pop_all(&mut heap), vec![0, 2, 6, 9, 8, 5, 7, 4, 1, 3]);
    }

    #[test]
    fn retain_rebuilds_heap() {
        let mut heap = TimerHeap::default();
        for i in 0..20u32 {
            heap.push(f64::from(20 - i), i);
        }
        let mut removed = Vec::new();
        heap.retain_and_heapify(|id| id % 3 != 0, |id| removed.push(id));
        assert_eq!(removed.len(), 7);
        let order = pop_all(&mut heap);
        let whens: Vec<u32> = order.iter().map(|id| 20 - id).collect();
        let mut sorted = whens.clone();
        sorted.sort_unstable();
        assert_eq!(whens, sorted);
    }
}
