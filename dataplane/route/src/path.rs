//! The per-virtual-host path index: a compressed radix tree over path bytes.
//!
//! Every configured path (prefix or exact) ends at a node of the tree. A node
//! remembers the smallest route index whose prefix ends there and, separately,
//! the smallest route index whose exact path ends there. A lookup walks the
//! request path down the tree once; every prefix route that matches lies on
//! that walk, and an exact route matches only at the node where the walk
//! consumes the whole path. The answer is the minimum route index seen, which
//! is "the first route in configuration order whose match holds".
//!
//! Cost: one walk of at most `path.len()` bytes plus a binary search over the
//! children's first bytes per node, independent of the number of routes. No
//! allocation. Each node also stores the minimum route index in its subtree,
//! so the walk stops as soon as nothing deeper could beat the best match found
//! so far (a catch-all `/` configured first ends every lookup at the root's
//! child).
//!
//! Routes with conditions besides the path (headers, query parameters) are
//! *candidates*: their path match is still found by the walk, but whether
//! they match depends on the request. Their indexes are kept apart, in
//! sorted lists on the nodes where their paths end, and never lower the
//! unconditional best. After the walk, the candidates met on the way and
//! the routes the tree cannot index (regex and case-insensitive paths) are
//! merged in index order and checked one by one while they are below the
//! unconditional best: the first that holds wins, exactly as a scan in
//! configuration order would decide. A table without such routes never
//! leaves the fast path.

/// "No route ends here".
const NONE: u32 = u32::MAX;

#[derive(Clone, Default)]
struct Node {
    /// Bytes on the edge from the parent to this node (empty for the root).
    label: Box<[u8]>,
    /// First byte of each child's label, sorted; parallel to `children`.
    first: Vec<u8>,
    children: Vec<u32>,
    /// Smallest route index whose prefix ends exactly at this node.
    prefix: u32,
    /// Smallest route index whose exact path ends exactly at this node.
    exact: u32,
    /// Smallest route index among this node and all its descendants,
    /// conditional routes included.
    subtree_min: u32,
    /// Index into `PathIndex::conds` when conditional routes end here.
    cond: u32,
}

/// Conditional routes whose key ends at one node, ascending.
#[derive(Clone, Default)]
struct CondLists {
    prefix: Vec<u32>,
    exact: Vec<u32>,
}

impl Node {
    fn new(label: &[u8]) -> Node {
        Node {
            label: label.into(),
            first: Vec::new(),
            children: Vec::new(),
            prefix: NONE,
            exact: NONE,
            subtree_min: NONE,
            cond: NONE,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Prefix,
    Exact,
}

/// Compiled path matcher of one virtual host.
#[derive(Clone)]
pub(crate) struct PathIndex {
    /// `nodes[0]` is the root.
    nodes: Vec<Node>,
    conds: Vec<CondLists>,
}

impl Default for PathIndex {
    fn default() -> Self {
        PathIndex {
            nodes: vec![Node::new(b"")],
            conds: Vec::new(),
        }
    }
}

impl PathIndex {
    /// Record that route `idx` matches `key` (as a prefix or exactly). When
    /// several unconditional routes share a key the smallest index wins, so
    /// insertion order does not matter. A `conditional` route is kept as a
    /// candidate (see the module documentation).
    pub(crate) fn insert(&mut self, key: &[u8], kind: Kind, idx: u32, conditional: bool) {
        let mut node = 0usize;
        let mut i = 0usize;
        loop {
            if i == key.len() {
                if conditional {
                    if self.nodes[node].cond == NONE {
                        self.nodes[node].cond = self.conds.len() as u32;
                        self.conds.push(CondLists::default());
                    }
                    let lists = &mut self.conds[self.nodes[node].cond as usize];
                    match kind {
                        Kind::Prefix => lists.prefix.push(idx),
                        Kind::Exact => lists.exact.push(idx),
                    }
                    return;
                }
                let n = &mut self.nodes[node];
                let slot = match kind {
                    Kind::Prefix => &mut n.prefix,
                    Kind::Exact => &mut n.exact,
                };
                *slot = (*slot).min(idx);
                return;
            }
            let rest = &key[i..];
            let pos = match self.nodes[node].first.binary_search(&rest[0]) {
                Ok(pos) => pos,
                Err(pos) => {
                    // No child starts with this byte: the rest becomes a leaf.
                    let leaf = self.push(Node::new(rest));
                    let parent = &mut self.nodes[node];
                    parent.first.insert(pos, rest[0]);
                    parent.children.insert(pos, leaf);
                    node = leaf as usize;
                    i = key.len();
                    continue;
                }
            };
            let child = self.nodes[node].children[pos] as usize;
            let common = common_prefix(&self.nodes[child].label, rest);
            if common < self.nodes[child].label.len() {
                // The key ends or diverges inside the child's edge: split the
                // edge so that a node exists where the shared part ends.
                let label = std::mem::take(&mut self.nodes[child].label);
                self.nodes[child].label = label[common..].into();
                let mut mid = Node::new(&label[..common]);
                mid.first.push(label[common]);
                mid.children.push(child as u32);
                let mid = self.push(mid);
                self.nodes[node].children[pos] = mid;
                node = mid as usize;
            } else {
                node = child;
            }
            i += common;
        }
    }

    fn push(&mut self, node: Node) -> u32 {
        let idx = u32::try_from(self.nodes.len()).unwrap_or(NONE);
        self.nodes.push(node);
        idx
    }

    /// Fill `subtree_min` once every key is inserted. Iterative so that a
    /// pathological chain of nested prefixes cannot overflow the stack.
    pub(crate) fn finish(&mut self) {
        for c in &mut self.conds {
            c.prefix.sort_unstable();
            c.exact.sort_unstable();
        }
        let mut order = Vec::with_capacity(self.nodes.len());
        let mut stack = vec![0u32];
        while let Some(n) = stack.pop() {
            order.push(n);
            stack.extend_from_slice(&self.nodes[n as usize].children);
        }
        // Children come after their parent in `order`: walk it backwards.
        for &n in order.iter().rev() {
            let node = &self.nodes[n as usize];
            let mut min = node.prefix.min(node.exact);
            if let Some(c) = self.conds.get(node.cond as usize) {
                let first = |l: &[u32]| l.first().copied().unwrap_or(NONE);
                min = min.min(first(&c.prefix)).min(first(&c.exact));
            }
            for &c in &node.children {
                min = min.min(self.nodes[c as usize].subtree_min);
            }
            self.nodes[n as usize].subtree_min = min;
        }
        self.nodes.shrink_to_fit();
        self.conds.shrink_to_fit();
    }

    /// The smallest route index that matches: among the unconditional
    /// routes whose path matches `path`, the conditional ones whose path
    /// matches and for which `holds` is true, and the routes of `others`
    /// (ascending indexes whose path is not in the tree, e.g. regexes) for
    /// which `holds` is true. `holds` is called in ascending index order,
    /// only for indexes below the best unconditional match, and stops at
    /// the first `true`.
    #[inline]
    pub(crate) fn lookup(
        &self,
        path: &[u8],
        others: &[u32],
        mut holds: impl FnMut(u32) -> bool,
    ) -> Option<u32> {
        let mut best = NONE;
        // Created only when a conditional route lies on the walk.
        let mut candidates: Option<Candidates<'_>> = None;
        let mut node = &self.nodes[0];
        let mut rest = path;
        loop {
            best = best.min(node.prefix);
            let at_end = rest.is_empty();
            if at_end {
                best = best.min(node.exact);
            }
            if let Some(c) = self.conds.get(node.cond as usize) {
                let cands = candidates.get_or_insert_with(Candidates::default);
                cands.push(&c.prefix);
                if at_end {
                    cands.push(&c.exact);
                }
            }
            if at_end || node.subtree_min >= best {
                break;
            }
            let Ok(pos) = node.first.binary_search(&rest[0]) else {
                break;
            };
            let child = &self.nodes[node.children[pos] as usize];
            match rest.strip_prefix(&*child.label) {
                Some(r) => rest = r,
                // Every configured key ends at a node, so none ends inside
                // an edge the path does not follow to its end.
                None => break,
            }
            node = child;
        }
        if others.first().is_some_and(|&o| o < best) {
            candidates
                .get_or_insert_with(Candidates::default)
                .push(others);
        }
        if let Some(mut cands) = candidates {
            if let Some(i) = cands.first_holding(best, &mut holds) {
                return Some(i);
            }
        }
        (best != NONE).then_some(best)
    }

    pub(crate) fn node_count(&self) -> usize {
        self.nodes.len()
    }
}

fn common_prefix(a: &[u8], b: &[u8]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// Sorted index lists to merge. Up to [`INLINE_LISTS`] stay on the stack;
/// only a path crossing more nodes with conditional routes spills to the
/// heap.
const INLINE_LISTS: usize = 16;

struct Candidates<'a> {
    inline: [&'a [u32]; INLINE_LISTS],
    len: usize,
    spill: Vec<&'a [u32]>,
}

impl Default for Candidates<'_> {
    fn default() -> Self {
        Candidates {
            inline: [&[]; INLINE_LISTS],
            len: 0,
            spill: Vec::new(),
        }
    }
}

impl<'a> Candidates<'a> {
    fn push(&mut self, list: &'a [u32]) {
        if list.is_empty() {
            return;
        }
        if self.spill.is_empty() && self.len < INLINE_LISTS {
            self.inline[self.len] = list;
            self.len += 1;
        } else {
            if self.spill.is_empty() {
                self.spill.extend_from_slice(&self.inline[..self.len]);
            }
            self.spill.push(list);
        }
    }

    /// Merge the lists in ascending order (each index appears in one list
    /// only: a route has one path) and return the first index below
    /// `bound` for which `holds` is true.
    fn first_holding(&mut self, bound: u32, holds: &mut impl FnMut(u32) -> bool) -> Option<u32> {
        let lists: &mut [&'a [u32]] = if self.spill.is_empty() {
            &mut self.inline[..self.len]
        } else {
            &mut self.spill
        };
        loop {
            let mut min = bound;
            let mut which = usize::MAX;
            for (j, l) in lists.iter().enumerate() {
                if let Some(&x) = l.first() {
                    if x < min {
                        min = x;
                        which = j;
                    }
                }
            }
            let list = lists.get_mut(which)?;
            *list = &list[1..];
            if holds(min) {
                return Some(min);
            }
        }
    }
}
