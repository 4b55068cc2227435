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
    /// Smallest route index among this node and all its descendants.
    subtree_min: u32,
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
}

impl Default for PathIndex {
    fn default() -> Self {
        PathIndex {
            nodes: vec![Node::new(b"")],
        }
    }
}

impl PathIndex {
    /// Record that route `idx` matches `key` (as a prefix or exactly). When
    /// several routes share a key the smallest index wins, so insertion order
    /// does not matter.
    pub(crate) fn insert(&mut self, key: &[u8], kind: Kind, idx: u32) {
        let mut node = 0usize;
        let mut i = 0usize;
        loop {
            if i == key.len() {
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
            for &c in &node.children {
                min = min.min(self.nodes[c as usize].subtree_min);
            }
            self.nodes[n as usize].subtree_min = min;
        }
        self.nodes.shrink_to_fit();
    }

    /// Smallest route index matching `path`.
    #[inline]
    pub(crate) fn lookup(&self, path: &[u8]) -> Option<u32> {
        let mut best = NONE;
        let mut node = &self.nodes[0];
        let mut rest = path;
        loop {
            best = best.min(node.prefix);
            if rest.is_empty() {
                best = best.min(node.exact);
                break;
            }
            if node.subtree_min >= best {
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
        (best != NONE).then_some(best)
    }

    pub(crate) fn node_count(&self) -> usize {
        self.nodes.len()
    }
}

fn common_prefix(a: &[u8], b: &[u8]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}
