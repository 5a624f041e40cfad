//! An arena red-black tree with stable node handles.
//!
//! [`RbTree`] keeps a directory's entries ordered by readdir cookie. Other indexes (the name hash
//! table of a directory) refer to entries by [`NodeId`], so a handle must keep pointing at the
//! same key and value while other entries come and go.
//!
//! # Layout
//!
//! Nodes live in one `Vec` of slots. A slot is either occupied by a node (key, value, `left`,
//! `right` and `parent` links as `u32` slot indices, and a colour) or vacant. Vacant slots form
//! a singly linked free list threaded through the slots themselves, so freed space is reused by
//! the next insert and costs nothing extra. The link value [`u32::MAX`] means "no node"; a tree
//! therefore holds at most `u32::MAX - 1` nodes.
//!
//! # Why handles are stable
//!
//! A [`NodeId`] is a slot index. A node never leaves its slot until it is removed: rotations and
//! removal only rewrite links. In particular, removing a node with two children relinks its
//! in-order successor into its place instead of moving the successor's key and value into the
//! removed node's slot (the textbook shortcut, which would silently retarget the successor's
//! handle). The slot vector is never compacted or shrunk while it holds a node (it is reset only
//! when the tree becomes empty, when no valid handle exists).
//!
//! Once a node is removed, its slot may be reused by a later insert: a stale handle then refers
//! to the new node. Callers must forget a handle when they remove its node.
//!
//! # Invariants
//!
//! [`RbTree::check_invariants`] verifies all of them:
//!
//! 1. The root, if any, is black and has no parent.
//! 2. No red node has a red child.
//! 3. Every path from the root to a missing child passes the same number of black nodes (the
//!    black height).
//! 4. Keys strictly increase in in-order sequence (no duplicates).
//! 5. Each child's `parent` link names the node that links to it.
//! 6. The stored length equals both the number of nodes reachable from the root and the number of
//!    occupied slots.
//! 7. The free list visits every vacant slot exactly once and nothing else.
//!
//! # Complexity
//!
//! With `n` nodes the height is at most `2 * log2(n + 1)`, so [`insert`](RbTree::insert),
//! [`remove`](RbTree::remove), [`find`](RbTree::find) and [`first_after`](RbTree::first_after)
//! take O(log n); insert and remove do at most three rotations. [`get`](RbTree::get) is O(1).
//! [`next`](RbTree::next) walks parent links: O(log n) worst case, O(1) amortised over a full
//! iteration, and it needs no stack, so iterating allocates nothing. No operation recurses.

use alloc::collections::TryReserveError;
use alloc::vec::Vec;
use core::fmt;
use core::iter::FusedIterator;
use core::mem;

/// Link value meaning "no node".
const NIL: u32 = u32::MAX;

/// Handle to a node in an [`RbTree`]; stays valid until that node is removed.
///
/// After removal the slot may be reused by a later insert, and the old handle then refers to the
/// new node; forget handles of removed nodes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct NodeId(u32);

impl NodeId {
    /// The slot index this handle names, below `u32::MAX`.
    pub const fn index(self) -> u32 {
        self.0
    }
}

/// Node colour. A missing child (`NIL`) counts as black.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Color {
    Red,
    Black,
}

/// An occupied slot's content.
///
/// `Color` is a two-valued byte, which leaves the compiler a niche for [`Slot`]'s discriminant,
/// and it fits in the padding after the three links for word-aligned keys and values.
#[derive(Clone, Debug)]
struct Node<K, V> {
    key: K,
    value: V,
    left: u32,
    right: u32,
    parent: u32,
    color: Color,
}

/// One arena slot.
#[derive(Clone, Debug)]
enum Slot<K, V> {
    Occupied(Node<K, V>),
    /// A free slot; `next_free` is the next free slot index or `NIL`.
    Vacant {
        next_free: u32,
    },
}

/// A red-black tree stored in an arena, with handles ([`NodeId`]) that survive the insertion
/// and removal of other nodes. See the [module documentation](self) for layout and invariants.
#[derive(Clone)]
pub struct RbTree<K, V> {
    slots: Vec<Slot<K, V>>,
    root: u32,
    /// Head of the free list threaded through vacant slots, or `NIL`.
    free_head: u32,
    /// Number of occupied slots.
    len: u32,
}

/// A structural defect found by [`RbTree::check_invariants`].
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum InvariantError {
    /// The root node is red.
    RedRoot,
    /// The root node has a parent link.
    RootHasParent,
    /// A red node has a red child.
    RedChildOfRed,
    /// Two root-to-leaf paths pass different numbers of black nodes.
    UnequalBlackHeight,
    /// Keys are not strictly increasing in in-order sequence.
    KeyOrder,
    /// A node's parent link does not name the node that links to it.
    ParentLink,
    /// A link names a slot that is out of range or vacant.
    DanglingLink,
    /// The stored length disagrees with the reachable nodes or the occupied slots.
    LengthMismatch,
    /// The free list misses a vacant slot, names an occupied or out-of-range slot, or loops.
    FreeList,
}

impl fmt::Display for InvariantError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self {
            Self::RedRoot => "root node is red",
            Self::RootHasParent => "root node has a parent link",
            Self::RedChildOfRed => "red node has a red child",
            Self::UnequalBlackHeight => "paths differ in black height",
            Self::KeyOrder => "keys not strictly increasing in order",
            Self::ParentLink => "parent link does not match child link",
            Self::DanglingLink => "link to a vacant or out-of-range slot",
            Self::LengthMismatch => "length disagrees with reachable or occupied nodes",
            Self::FreeList => "free list does not cover exactly the vacant slots",
        };
        write!(f, "red-black tree invariant violated: {what}")
    }
}

impl core::error::Error for InvariantError {}

impl<K, V> Default for RbTree<K, V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K: fmt::Debug, V: fmt::Debug> fmt::Debug for RbTree<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.iter().map(|(_, k, v)| (k, v)))
            .finish()
    }
}

impl<'a, K, V> IntoIterator for &'a RbTree<K, V> {
    type Item = (NodeId, &'a K, &'a V);
    type IntoIter = Iter<'a, K, V>;

    fn into_iter(self) -> Iter<'a, K, V> {
        self.iter()
    }
}

/// Operations that only follow links; they need no key ordering.
impl<K, V> RbTree<K, V> {
    /// An empty tree. Does not allocate.
    pub const fn new() -> Self {
        Self {
            slots: Vec::new(),
            root: NIL,
            free_head: NIL,
            len: 0,
        }
    }

    /// Number of nodes in the tree.
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// Whether the tree has no nodes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Makes room for `additional` more nodes, so that that many inserts will not allocate.
    ///
    /// Vacant slots count toward the room. Lets callers report an out-of-space error instead of
    /// aborting on allocation failure.
    ///
    /// # Errors
    ///
    /// Fails if the allocator refuses, or with a capacity-overflow error if the tree would then
    /// need more than `u32::MAX - 1` slots.
    pub fn try_reserve(&mut self, additional: usize) -> Result<(), TryReserveError> {
        let vacant = self.slots.len() - self.len();
        let new_slots = additional.saturating_sub(vacant);
        if self.slots.len().saturating_add(new_slots) > NIL as usize {
            // `TryReserveError` has no public constructor; an impossible reservation yields
            // the capacity-overflow variant.
            return Vec::<u8>::new().try_reserve(usize::MAX);
        }
        self.slots.try_reserve(new_slots)
    }

    /// Removes the node `id` and returns its key and value.
    ///
    /// Handles of all other nodes stay valid and keep referring to their own key and value.
    /// The slot of `id` becomes free and may be handed out by a later insert.
    ///
    /// # Panics
    ///
    /// Panics if `id` does not name a node of this tree (out of range, or already removed).
    pub fn remove(&mut self, id: NodeId) -> (K, V) {
        let z = id.0;
        assert!(
            matches!(self.slots.get(z as usize), Some(Slot::Occupied(_))),
            "RbTree::remove: stale or invalid NodeId {z}"
        );
        let (z_left, z_right, z_parent, z_color) = {
            let n = self.node(z);
            (n.left, n.right, n.parent, n.color)
        };
        // `x` moves into the position of the removed black node (if any) and may be NIL, so its
        // parent is tracked separately.
        let removed_color;
        let x;
        let x_parent;
        if z_left == NIL {
            removed_color = z_color;
            x = z_right;
            x_parent = z_parent;
            self.transplant(z, z_right);
        } else if z_right == NIL {
            removed_color = z_color;
            x = z_left;
            x_parent = z_parent;
            self.transplant(z, z_left);
        } else {
            // Two children: relink the successor `y` into `z`'s place; payloads never move.
            let y = self.minimum(z_right);
            removed_color = self.node(y).color;
            x = self.node(y).right;
            if self.node(y).parent == z {
                x_parent = y;
            } else {
                x_parent = self.node(y).parent;
                self.transplant(y, x);
                self.node_mut(y).right = z_right;
                self.node_mut(z_right).parent = y;
            }
            self.transplant(z, y);
            let y_node = self.node_mut(y);
            y_node.left = z_left;
            y_node.color = z_color;
            self.node_mut(z_left).parent = y;
        }
        if removed_color == Color::Black {
            self.remove_fixup(x, x_parent);
        }

        let slot = mem::replace(
            &mut self.slots[z as usize],
            Slot::Vacant {
                next_free: self.free_head,
            },
        );
        self.free_head = z;
        self.len -= 1;
        if self.len == 0 {
            // No handle can be valid any more, so restarting the arena moves nothing.
            self.slots.clear();
            self.free_head = NIL;
        }
        match slot {
            Slot::Occupied(node) => (node.key, node.value),
            Slot::Vacant { .. } => unreachable!("slot checked occupied above"),
        }
    }

    /// The key and value of node `id`, or `None` if `id` names no node of this tree.
    pub fn get(&self, id: NodeId) -> Option<(&K, &V)> {
        match self.slots.get(id.0 as usize)? {
            Slot::Occupied(n) => Some((&n.key, &n.value)),
            Slot::Vacant { .. } => None,
        }
    }

    /// The key and mutable value of node `id`, or `None` if `id` names no node of this tree.
    ///
    /// The key is shared only: changing it could break the ordering.
    pub fn get_mut(&mut self, id: NodeId) -> Option<(&K, &mut V)> {
        match self.slots.get_mut(id.0 as usize)? {
            Slot::Occupied(n) => Some((&n.key, &mut n.value)),
            Slot::Vacant { .. } => None,
        }
    }

    /// The node with the smallest key.
    pub fn first(&self) -> Option<NodeId> {
        (self.root != NIL).then(|| NodeId(self.minimum(self.root)))
    }

    /// The node with the largest key.
    pub fn last(&self) -> Option<NodeId> {
        (self.root != NIL).then(|| NodeId(self.maximum(self.root)))
    }

    /// The in-order successor of `id`: the node with the next larger key.
    ///
    /// O(log n) worst case; O(1) amortised when walking the whole tree.
    ///
    /// # Panics
    ///
    /// Panics if `id` does not name a node of this tree.
    pub fn next(&self, id: NodeId) -> Option<NodeId> {
        let next = self.successor(id.0);
        (next != NIL).then_some(NodeId(next))
    }

    /// In-order iterator over `(handle, key, value)`.
    pub fn iter(&self) -> Iter<'_, K, V> {
        Iter {
            tree: self,
            next: self.first().map_or(NIL, NodeId::index),
            remaining: self.len(),
        }
    }

    /// Removes every node and frees the storage. All handles become invalid.
    pub fn clear(&mut self) {
        self.slots = Vec::new();
        self.root = NIL;
        self.free_head = NIL;
        self.len = 0;
    }

    /// The node in slot `i`; `i` must be occupied (an internal invariant).
    fn node(&self, i: u32) -> &Node<K, V> {
        match &self.slots[i as usize] {
            Slot::Occupied(n) => n,
            Slot::Vacant { .. } => panic!("RbTree: link to vacant slot {i}"),
        }
    }

    /// Mutable form of [`Self::node`].
    fn node_mut(&mut self, i: u32) -> &mut Node<K, V> {
        match &mut self.slots[i as usize] {
            Slot::Occupied(n) => n,
            Slot::Vacant { .. } => panic!("RbTree: link to vacant slot {i}"),
        }
    }

    /// Whether `i` is a red node; `NIL` is black.
    fn is_red(&self, i: u32) -> bool {
        i != NIL && self.node(i).color == Color::Red
    }

    /// Colours node `i` black unless it is `NIL` (which is black already).
    fn set_black(&mut self, i: u32) {
        if i != NIL {
            self.node_mut(i).color = Color::Black;
        }
    }

    fn minimum(&self, mut i: u32) -> u32 {
        loop {
            let left = self.node(i).left;
            if left == NIL {
                return i;
            }
            i = left;
        }
    }

    fn maximum(&self, mut i: u32) -> u32 {
        loop {
            let right = self.node(i).right;
            if right == NIL {
                return i;
            }
            i = right;
        }
    }

    /// In-order successor of node `i`, or `NIL`.
    fn successor(&self, i: u32) -> u32 {
        let right = self.node(i).right;
        if right != NIL {
            return self.minimum(right);
        }
        // Climb until we leave a left subtree.
        let mut child = i;
        let mut parent = self.node(i).parent;
        while parent != NIL && self.node(parent).right == child {
            child = parent;
            parent = self.node(parent).parent;
        }
        parent
    }

    /// Makes `new` (possibly `NIL`) take `old`'s place under `old`'s parent.
    fn transplant(&mut self, old: u32, new: u32) {
        let parent = self.node(old).parent;
        self.replace_child(parent, old, new);
        if new != NIL {
            self.node_mut(new).parent = parent;
        }
    }

    /// Points the link of `parent` (or the root if `parent` is `NIL`) that named `old` at `new`.
    fn replace_child(&mut self, parent: u32, old: u32, new: u32) {
        if parent == NIL {
            self.root = new;
        } else {
            let p = self.node_mut(parent);
            if p.left == old {
                p.left = new;
            } else {
                p.right = new;
            }
        }
    }

    /// Rotates `x` down to the left; its right child `y` takes its place.
    fn rotate_left(&mut self, x: u32) {
        let y = self.node(x).right;
        let y_left = self.node(y).left;
        self.node_mut(x).right = y_left;
        if y_left != NIL {
            self.node_mut(y_left).parent = x;
        }
        self.transplant(x, y);
        self.node_mut(y).left = x;
        self.node_mut(x).parent = y;
    }

    /// Rotates `x` down to the right; its left child `y` takes its place.
    fn rotate_right(&mut self, x: u32) {
        let y = self.node(x).left;
        let y_right = self.node(y).right;
        self.node_mut(x).left = y_right;
        if y_right != NIL {
            self.node_mut(y_right).parent = x;
        }
        self.transplant(x, y);
        self.node_mut(y).right = x;
        self.node_mut(x).parent = y;
    }

    /// Restores the colour invariants after inserting the red node `z`.
    fn insert_fixup(&mut self, mut z: u32) {
        loop {
            let parent = self.node(z).parent;
            if !self.is_red(parent) {
                break;
            }
            // A red parent is not the root, so the grandparent exists.
            let grand = self.node(parent).parent;
            let parent_is_left = self.node(grand).left == parent;
            let uncle = if parent_is_left {
                self.node(grand).right
            } else {
                self.node(grand).left
            };
            if self.is_red(uncle) {
                self.node_mut(parent).color = Color::Black;
                self.node_mut(uncle).color = Color::Black;
                self.node_mut(grand).color = Color::Red;
                z = grand;
                continue;
            }
            let mut parent = parent;
            if parent_is_left {
                if self.node(parent).right == z {
                    self.rotate_left(parent);
                    parent = z;
                }
                self.node_mut(parent).color = Color::Black;
                self.node_mut(grand).color = Color::Red;
                self.rotate_right(grand);
            } else {
                if self.node(parent).left == z {
                    self.rotate_right(parent);
                    parent = z;
                }
                self.node_mut(parent).color = Color::Black;
                self.node_mut(grand).color = Color::Red;
                self.rotate_left(grand);
            }
            break;
        }
        let root = self.root;
        self.set_black(root);
    }

    /// Restores the black height after a black node was unlinked; `x` (possibly `NIL`) carries
    /// the missing black and `parent` is its parent.
    fn remove_fixup(&mut self, mut x: u32, mut parent: u32) {
        while x != self.root && !self.is_red(x) {
            // `x` is one black short, so its sibling subtree holds at least one black node:
            // the sibling exists.
            if self.node(parent).left == x {
                let mut w = self.node(parent).right;
                if self.is_red(w) {
                    self.node_mut(w).color = Color::Black;
                    self.node_mut(parent).color = Color::Red;
                    self.rotate_left(parent);
                    w = self.node(parent).right;
                }
                let (w_left, w_right) = (self.node(w).left, self.node(w).right);
                if !self.is_red(w_left) && !self.is_red(w_right) {
                    self.node_mut(w).color = Color::Red;
                    x = parent;
                    parent = self.node(x).parent;
                    continue;
                }
                if !self.is_red(w_right) {
                    self.set_black(w_left);
                    self.node_mut(w).color = Color::Red;
                    self.rotate_right(w);
                    w = self.node(parent).right;
                }
                self.node_mut(w).color = self.node(parent).color;
                self.node_mut(parent).color = Color::Black;
                let w_right = self.node(w).right;
                self.set_black(w_right);
                self.rotate_left(parent);
            } else {
                let mut w = self.node(parent).left;
                if self.is_red(w) {
                    self.node_mut(w).color = Color::Black;
                    self.node_mut(parent).color = Color::Red;
                    self.rotate_right(parent);
                    w = self.node(parent).left;
                }
                let (w_left, w_right) = (self.node(w).left, self.node(w).right);
                if !self.is_red(w_left) && !self.is_red(w_right) {
                    self.node_mut(w).color = Color::Red;
                    x = parent;
                    parent = self.node(x).parent;
                    continue;
                }
                if !self.is_red(w_left) {
                    self.set_black(w_right);
                    self.node_mut(w).color = Color::Red;
                    self.rotate_left(w);
                    w = self.node(parent).left;
                }
                self.node_mut(w).color = self.node(parent).color;
                self.node_mut(parent).color = Color::Black;
                let w_left = self.node(w).left;
                self.set_black(w_left);
                self.rotate_right(parent);
            }
            x = self.root;
        }
        self.set_black(x);
    }

    /// Checks the free list: every entry vacant and in range, no loop, and as many entries as
    /// vacant slots (so, without repeats, exactly the vacant slots).
    fn check_free_list(&self) -> Result<(), InvariantError> {
        let vacant = self.slots.len() - self.len();
        let mut seen = 0usize;
        let mut i = self.free_head;
        while i != NIL {
            seen += 1;
            if seen > vacant {
                return Err(InvariantError::FreeList);
            }
            match self.slots.get(i as usize) {
                Some(Slot::Vacant { next_free }) => i = *next_free,
                _ => return Err(InvariantError::FreeList),
            }
        }
        if seen == vacant {
            Ok(())
        } else {
            Err(InvariantError::FreeList)
        }
    }
}

/// Operations that compare keys.
impl<K: Ord, V> RbTree<K, V> {
    /// Inserts `key` with `value` and returns the new node's handle.
    ///
    /// Allocates only when no slot is vacant; call [`try_reserve`](Self::try_reserve) first to
    /// turn allocation failure into an error.
    ///
    /// # Errors
    ///
    /// Gives back `(key, value)` unchanged if `key` is already present.
    ///
    /// # Panics
    ///
    /// Panics if the tree already holds `u32::MAX - 1` nodes.
    pub fn insert(&mut self, key: K, value: V) -> Result<NodeId, (K, V)> {
        let mut parent = NIL;
        let mut go_left = false;
        let mut cur = self.root;
        while cur != NIL {
            let n = self.node(cur);
            parent = cur;
            match key.cmp(&n.key) {
                core::cmp::Ordering::Less => {
                    go_left = true;
                    cur = n.left;
                }
                core::cmp::Ordering::Greater => {
                    go_left = false;
                    cur = n.right;
                }
                core::cmp::Ordering::Equal => return Err((key, value)),
            }
        }
        let node = Node {
            key,
            value,
            left: NIL,
            right: NIL,
            parent,
            color: Color::Red,
        };
        let z = if self.free_head == NIL {
            let index = u32::try_from(self.slots.len())
                .ok()
                .filter(|&i| i != NIL)
                .expect("RbTree: more than u32::MAX - 1 nodes");
            self.slots.push(Slot::Occupied(node));
            index
        } else {
            let index = self.free_head;
            let old = mem::replace(&mut self.slots[index as usize], Slot::Occupied(node));
            match old {
                Slot::Vacant { next_free } => self.free_head = next_free,
                Slot::Occupied(_) => unreachable!("free list names an occupied slot"),
            }
            index
        };
        self.len += 1;
        if parent == NIL {
            self.root = z;
        } else if go_left {
            self.node_mut(parent).left = z;
        } else {
            self.node_mut(parent).right = z;
        }
        self.insert_fixup(z);
        Ok(NodeId(z))
    }

    /// The node whose key equals `key`.
    pub fn find(&self, key: &K) -> Option<NodeId> {
        let mut cur = self.root;
        while cur != NIL {
            let n = self.node(cur);
            cur = match key.cmp(&n.key) {
                core::cmp::Ordering::Less => n.left,
                core::cmp::Ordering::Greater => n.right,
                core::cmp::Ordering::Equal => return Some(NodeId(cur)),
            };
        }
        None
    }

    /// The node with the smallest key strictly greater than `key`; `key` need not be present.
    pub fn first_after(&self, key: &K) -> Option<NodeId> {
        let mut best = NIL;
        let mut cur = self.root;
        while cur != NIL {
            let n = self.node(cur);
            if n.key > *key {
                best = cur;
                cur = n.left;
            } else {
                cur = n.right;
            }
        }
        (best != NIL).then_some(NodeId(best))
    }

    /// In-order iterator over the nodes whose key is strictly greater than `key`.
    pub fn iter_after(&self, key: &K) -> Iter<'_, K, V> {
        Iter {
            tree: self,
            next: self.first_after(key).map_or(NIL, NodeId::index),
            remaining: self.len(),
        }
    }

    /// Verifies every invariant listed in the [module documentation](self) and returns the
    /// black height: the number of black nodes on each path from the root to a missing child
    /// (0 for an empty tree).
    ///
    /// O(n) time and O(height) extra memory. Terminates even on a corrupted tree.
    ///
    /// # Errors
    ///
    /// The first violation found.
    pub fn check_invariants(&self) -> Result<usize, InvariantError> {
        let occupied = self
            .slots
            .iter()
            .filter(|s| matches!(s, Slot::Occupied(_)))
            .count();
        if occupied != self.len() {
            return Err(InvariantError::LengthMismatch);
        }
        self.check_free_list()?;
        if self.root == NIL {
            return if self.len == 0 {
                Ok(0)
            } else {
                Err(InvariantError::LengthMismatch)
            };
        }
        match self.slots.get(self.root as usize) {
            Some(Slot::Occupied(root)) => {
                if root.color == Color::Red {
                    return Err(InvariantError::RedRoot);
                }
                if root.parent != NIL {
                    return Err(InvariantError::RootHasParent);
                }
            }
            _ => return Err(InvariantError::DanglingLink),
        }

        /// A node still to visit, with the context its parent passes down.
        struct Pending<'k, K> {
            node: u32,
            parent: u32,
            /// Exclusive key bounds from the ancestors.
            lower: Option<&'k K>,
            upper: Option<&'k K>,
            /// Black nodes on the path above `node`.
            blacks_above: usize,
        }

        let mut black_height = None;
        let mut reached = 0usize;
        let mut pending = Vec::new();
        pending.push(Pending {
            node: self.root,
            parent: NIL,
            lower: None,
            upper: None,
            blacks_above: 0,
        });
        while let Some(p) = pending.pop() {
            if p.node == NIL {
                match black_height {
                    None => black_height = Some(p.blacks_above),
                    Some(h) if h != p.blacks_above => {
                        return Err(InvariantError::UnequalBlackHeight);
                    }
                    Some(_) => {}
                }
                continue;
            }
            reached += 1;
            if reached > self.len() {
                // Also stops a walk around a cycle of links.
                return Err(InvariantError::LengthMismatch);
            }
            let Some(Slot::Occupied(n)) = self.slots.get(p.node as usize) else {
                return Err(InvariantError::DanglingLink);
            };
            if n.parent != p.parent {
                return Err(InvariantError::ParentLink);
            }
            if p.lower.is_some_and(|lo| n.key <= *lo) || p.upper.is_some_and(|hi| n.key >= *hi) {
                return Err(InvariantError::KeyOrder);
            }
            if n.color == Color::Red && self.is_red_checked(p.parent) {
                return Err(InvariantError::RedChildOfRed);
            }
            let blacks = p.blacks_above + usize::from(n.color == Color::Black);
            pending.push(Pending {
                node: n.right,
                parent: p.node,
                lower: Some(&n.key),
                upper: p.upper,
                blacks_above: blacks,
            });
            pending.push(Pending {
                node: n.left,
                parent: p.node,
                lower: p.lower,
                upper: Some(&n.key),
                blacks_above: blacks,
            });
        }
        if reached != self.len() {
            return Err(InvariantError::LengthMismatch);
        }
        Ok(black_height.unwrap_or(0))
    }

    /// Like [`Self::is_red`] but without panicking; `i` was already validated by the caller.
    fn is_red_checked(&self, i: u32) -> bool {
        matches!(self.slots.get(i as usize), Some(Slot::Occupied(n)) if n.color == Color::Red)
    }
}

/// In-order iterator over an [`RbTree`], yielding `(handle, key, value)`.
///
/// Created by [`RbTree::iter`] and [`RbTree::iter_after`]. Walks parent links, so it allocates
/// nothing.
#[derive(Clone, Debug)]
pub struct Iter<'a, K, V> {
    tree: &'a RbTree<K, V>,
    /// Next node to yield, or `NIL` when done.
    next: u32,
    /// Upper bound on the nodes left to yield.
    remaining: usize,
}

impl<'a, K, V> Iterator for Iter<'a, K, V> {
    type Item = (NodeId, &'a K, &'a V);

    fn next(&mut self) -> Option<Self::Item> {
        if self.next == NIL {
            return None;
        }
        let id = self.next;
        let node = self.tree.node(id);
        self.next = self.tree.successor(id);
        self.remaining -= 1;
        Some((NodeId(id), &node.key, &node.value))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (usize::from(self.next != NIL), Some(self.remaining))
    }
}

impl<K, V> FusedIterator for Iter<'_, K, V> {}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;
    use alloc::boxed::Box;
    use alloc::vec;
    use core::ops::Bound;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    /// Test-only access to internals for building corrupted trees.
    impl<K, V> RbTree<K, V> {
        fn node_for_test(&mut self, id: NodeId) -> &mut Node<K, V> {
            self.node_mut(id.0)
        }
    }

    fn keys<K: Copy, V>(tree: &RbTree<K, V>) -> Vec<K> {
        tree.iter().map(|(_, k, _)| *k).collect()
    }

    /// Height of the tree, counted without recursion.
    fn height<K, V>(tree: &RbTree<K, V>) -> usize {
        let mut max = 0;
        let mut stack = vec![];
        if tree.root != NIL {
            stack.push((tree.root, 1));
        }
        while let Some((i, depth)) = stack.pop() {
            max = max.max(depth);
            let n = tree.node(i);
            for child in [n.left, n.right] {
                if child != NIL {
                    stack.push((child, depth + 1));
                }
            }
        }
        max
    }

    /// A deterministic permutation of `0..n` (multiplication by a unit modulo a prime `n`).
    fn scrambled(n: u64) -> impl Iterator<Item = u64> {
        (0..n).map(move |i| (i * 7919 + 13) % n)
    }

    fn check_balanced<K: Ord, V>(tree: &RbTree<K, V>) {
        let bh = tree.check_invariants().expect("invariants");
        let limit = 2 * (usize::BITS - (tree.len() + 1).leading_zeros()) as usize;
        assert!(height(tree) <= limit, "height {} > {limit}", height(tree));
        if !tree.is_empty() {
            assert!(bh >= 1);
        }
    }

    #[test]
    fn new_is_empty_and_const() {
        const EMPTY: RbTree<u64, u64> = RbTree::new();
        let tree = EMPTY;
        assert!(tree.is_empty());
        assert_eq!(tree.len(), 0);
        assert_eq!(tree.slots.capacity(), 0);
        assert_eq!(tree.first(), None);
        assert_eq!(tree.last(), None);
        assert_eq!(tree.iter().next(), None);
        assert_eq!(tree.first_after(&0), None);
        assert_eq!(tree.check_invariants(), Ok(0));
    }

    /// Memory per node matters (a directory may hold a million entries).
    /// Measured on x86_64: `Slot<u64, (u64, Box<[u8]>, u8)>` is 56 bytes: key 8 + value 32 +
    /// three links 12 + colour 1, padded to 56; the slot discriminant lives in the colour
    /// byte's niche, and a vacant slot costs the same 56 bytes.
    #[test]
    fn slot_size() {
        type DirSlot = Slot<u64, (u64, Box<[u8]>, u8)>;
        assert_eq!(
            mem::size_of::<DirSlot>(),
            mem::size_of::<Node<u64, (u64, Box<[u8]>, u8)>>()
        );
        #[cfg(target_pointer_width = "64")]
        assert_eq!(mem::size_of::<DirSlot>(), 56);
        assert_eq!(mem::size_of::<Slot<u64, u64>>(), 32);
        assert_eq!(mem::size_of::<NodeId>(), 4);
        assert_eq!(mem::size_of::<Option<NodeId>>(), 8);
    }

    #[test]
    fn insert_ascending() {
        let mut tree = RbTree::new();
        for k in 0..1000u64 {
            tree.insert(k, k * 2).unwrap();
            if k.is_multiple_of(97) {
                check_balanced(&tree);
            }
        }
        check_balanced(&tree);
        assert_eq!(keys(&tree), (0..1000).collect::<Vec<_>>());
        assert_eq!(tree.len(), 1000);
    }

    #[test]
    fn insert_descending() {
        let mut tree = RbTree::new();
        for k in (0..1000u64).rev() {
            tree.insert(k, ()).unwrap();
        }
        check_balanced(&tree);
        assert_eq!(keys(&tree), (0..1000).collect::<Vec<_>>());
    }

    #[test]
    fn insert_scrambled() {
        let mut tree = RbTree::new();
        for k in scrambled(1009) {
            tree.insert(k, k + 1).unwrap();
        }
        check_balanced(&tree);
        assert_eq!(keys(&tree), (0..1009).collect::<Vec<_>>());
        for k in 0..1009 {
            let id = tree.find(&k).unwrap();
            assert_eq!(tree.get(id), Some((&k, &(k + 1))));
        }
        assert_eq!(tree.find(&1009), None);
    }

    #[test]
    fn insert_duplicate_gives_pair_back() {
        let mut tree = RbTree::new();
        let id = tree.insert(5u64, "a").unwrap();
        assert_eq!(tree.insert(5, "b"), Err((5, "b")));
        assert_eq!(tree.len(), 1);
        assert_eq!(tree.get(id), Some((&5, &"a")));
        tree.check_invariants().unwrap();
    }

    /// Keys `1..=7` inserted in ascending order, value `10 * key`, with their handles. Shape:
    /// black 2 at the root; black 1; red 4 with black 3 and black 6; 6 has red 5 and red 7.
    fn seven() -> (RbTree<u64, u64>, Vec<NodeId>) {
        let mut tree = RbTree::new();
        let ids = (1..=7u64)
            .map(|k| tree.insert(k, k * 10).unwrap())
            .collect();
        tree.check_invariants().unwrap();
        (tree, ids)
    }

    fn assert_handles(tree: &RbTree<u64, u64>, ids: &[(u64, NodeId)]) {
        for &(k, id) in ids {
            assert_eq!(tree.get(id), Some((&k, &(k * 10))), "handle of key {k}");
        }
    }

    #[test]
    fn remove_root() {
        let (mut tree, ids) = seven();
        let root = NodeId(tree.root);
        let (k, v) = tree.remove(root);
        assert_eq!(v, k * 10);
        check_balanced(&tree);
        let live: Vec<_> = (1..=7).zip(ids).filter(|&(key, _)| key != k).collect();
        assert_handles(&tree, &live);
        assert_eq!(tree.get(root), None);
        assert_eq!(keys(&tree).len(), 6);
    }

    #[test]
    fn remove_leaf() {
        let (mut tree, ids) = seven();
        let leaf = ids[0];
        let n = tree.node(leaf.0);
        assert_eq!((n.left, n.right), (NIL, NIL), "key 1 is a leaf");
        assert_eq!(tree.remove(leaf), (1, 10));
        check_balanced(&tree);
        assert_eq!(keys(&tree), vec![2, 3, 4, 5, 6, 7]);
        let live: Vec<_> = (2..=7).zip(ids[1..].iter().copied()).collect();
        assert_handles(&tree, &live);
    }

    #[test]
    fn remove_node_with_one_child() {
        // 2 black root, 1 and 3 black, 4 red right child of 3.
        let mut tree = RbTree::new();
        let ids: Vec<_> = [2u64, 1, 3, 4]
            .iter()
            .map(|&k| (k, tree.insert(k, k * 10).unwrap()))
            .collect();
        let three = ids[2].1;
        let n = tree.node(three.0);
        assert!(
            n.left == NIL && n.right != NIL,
            "key 3 has exactly one child"
        );
        assert_eq!(tree.remove(three), (3, 30));
        check_balanced(&tree);
        assert_eq!(keys(&tree), vec![1, 2, 4]);
        assert_handles(&tree, &[ids[0], ids[1], ids[3]]);
    }

    #[test]
    fn remove_node_with_two_children_keeps_successor_handle() {
        let mut tree = RbTree::new();
        let ids: Vec<_> = scrambled(101)
            .map(|k| (k, tree.insert(k, k * 10).unwrap()))
            .collect();
        // Pick an internal node whose successor is deep in its right subtree.
        let (victim_key, victim) = *ids
            .iter()
            .find(|(_, id)| {
                let n = tree.node(id.0);
                n.left != NIL && n.right != NIL && tree.node(n.right).left != NIL
            })
            .expect("some node with two children");
        let successor = tree.next(victim).unwrap();
        let successor_slot = successor.index();
        assert_eq!(tree.remove(victim), (victim_key, victim_key * 10));
        check_balanced(&tree);
        // The successor moved up in the tree but kept its slot and its payload.
        assert_eq!(successor.index(), successor_slot);
        assert_eq!(
            tree.get(successor),
            Some((&(victim_key + 1), &((victim_key + 1) * 10)))
        );
        let live: Vec<_> = ids.into_iter().filter(|&(k, _)| k != victim_key).collect();
        assert_handles(&tree, &live);
    }

    #[test]
    fn handles_survive_many_removals() {
        let mut tree = RbTree::new();
        let mut live: Vec<(u64, NodeId)> = scrambled(997)
            .map(|k| (k, tree.insert(k, k * 10).unwrap()))
            .collect();
        let mut step = 0u64;
        while live.len() > 1 {
            step += 1;
            let at = ((step * 31) % live.len() as u64) as usize;
            let (k, id) = live.swap_remove(at);
            assert_eq!(tree.remove(id), (k, k * 10));
            if step.is_multiple_of(50) {
                check_balanced(&tree);
                assert_handles(&tree, &live);
            }
        }
        assert_handles(&tree, &live);
        let (k, id) = live[0];
        assert_eq!(tree.remove(id), (k, k * 10));
        assert!(tree.is_empty());
        assert_eq!(tree.check_invariants(), Ok(0));
    }

    #[test]
    fn freed_slots_are_reused() {
        let (mut tree, ids) = seven();
        let slots = tree.slots.len();
        tree.remove(ids[3]);
        tree.remove(ids[5]);
        let a = tree.insert(100, 1000).unwrap();
        let b = tree.insert(0, 0).unwrap();
        assert_eq!(
            tree.slots.len(),
            slots,
            "no new slot while vacant ones exist"
        );
        let mut reused = [a.index(), b.index()];
        reused.sort_unstable();
        assert_eq!(reused, [ids[3].index(), ids[5].index()]);
        tree.check_invariants().unwrap();
        assert_eq!(keys(&tree), vec![0, 1, 2, 3, 5, 7, 100]);
    }

    #[test]
    #[should_panic(expected = "stale or invalid NodeId")]
    fn remove_stale_id_panics() {
        let (mut tree, ids) = seven();
        tree.remove(ids[2]);
        tree.remove(ids[2]);
    }

    #[test]
    #[should_panic(expected = "stale or invalid NodeId")]
    fn remove_out_of_range_id_panics() {
        let (mut tree, _) = seven();
        tree.remove(NodeId(1000));
    }

    #[test]
    fn get_mut_changes_value_only() {
        let (mut tree, ids) = seven();
        let (k, v) = tree.get_mut(ids[4]).unwrap();
        assert_eq!(*k, 5);
        *v = 555;
        assert_eq!(tree.get(ids[4]), Some((&5, &555)));
        assert_eq!(tree.get_mut(NodeId(99)), None);
        tree.check_invariants().unwrap();
    }

    #[test]
    fn first_last_next() {
        let mut tree = RbTree::new();
        for k in scrambled(61) {
            tree.insert(k * 2, ()).unwrap();
        }
        let first = tree.first().unwrap();
        let last = tree.last().unwrap();
        assert_eq!(tree.get(first).unwrap().0, &0);
        assert_eq!(tree.get(last).unwrap().0, &120);
        assert_eq!(tree.next(last), None);
        let mut walked = vec![];
        let mut cur = Some(first);
        while let Some(id) = cur {
            walked.push(*tree.get(id).unwrap().0);
            cur = tree.next(id);
        }
        assert_eq!(walked, (0..61).map(|k| k * 2).collect::<Vec<_>>());
    }

    #[test]
    fn first_after_missing_and_present_keys() {
        let mut tree = RbTree::new();
        for k in [10u64, 20, 30, 40, 50] {
            tree.insert(k, ()).unwrap();
        }
        let key_after = |k: u64| tree.first_after(&k).map(|id| *tree.get(id).unwrap().0);
        assert_eq!(key_after(0), Some(10));
        assert_eq!(key_after(9), Some(10));
        assert_eq!(key_after(10), Some(20));
        assert_eq!(key_after(11), Some(20));
        assert_eq!(key_after(35), Some(40));
        assert_eq!(key_after(49), Some(50));
        assert_eq!(key_after(50), None);
        assert_eq!(key_after(u64::MAX), None);
    }

    #[test]
    fn iter_after_resumes_listing() {
        let mut tree = RbTree::new();
        for k in scrambled(101) {
            tree.insert(k * 3, k).unwrap();
        }
        let after = |k: u64| tree.iter_after(&k).map(|(_, k, _)| *k).collect::<Vec<_>>();
        assert_eq!(after(0), (1..101).map(|k| k * 3).collect::<Vec<_>>());
        assert_eq!(after(100), (34..101).map(|k| k * 3).collect::<Vec<_>>());
        assert_eq!(after(101), (34..101).map(|k| k * 3).collect::<Vec<_>>());
        assert_eq!(after(300), vec![]);
        assert_eq!(after(299), vec![300]);
        // Handles yielded by iteration are the ones `find` returns.
        for (id, k, v) in tree.iter_after(&150) {
            assert_eq!(tree.find(k), Some(id));
            assert_eq!(*k, v * 3);
        }
        let it = tree.iter();
        assert_eq!(it.size_hint(), (1, Some(101)));
        assert_eq!(it.count(), 101);
    }

    #[test]
    fn try_reserve_counts_vacant_slots_and_rejects_overflow() {
        let mut tree: RbTree<u64, u64> = RbTree::new();
        tree.try_reserve(10).unwrap();
        let cap = tree.slots.capacity();
        assert!(cap >= 10);
        for k in 0..10 {
            tree.insert(k, k).unwrap();
        }
        assert_eq!(
            tree.slots.capacity(),
            cap,
            "reserved inserts did not reallocate"
        );
        for k in 0..4 {
            let id = tree.find(&k).unwrap();
            tree.remove(id);
        }
        tree.try_reserve(4).unwrap();
        assert_eq!(
            tree.slots.capacity(),
            cap,
            "vacant slots satisfy the reservation"
        );
        assert!(tree.try_reserve(usize::MAX).is_err());
        assert!(tree.try_reserve(u32::MAX as usize).is_err());
        tree.check_invariants().unwrap();
    }

    #[test]
    fn clear_frees_storage() {
        let (mut tree, ids) = seven();
        tree.clear();
        assert!(tree.is_empty());
        assert_eq!(tree.slots.capacity(), 0);
        assert_eq!(tree.get(ids[0]), None);
        assert_eq!(tree.check_invariants(), Ok(0));
        tree.insert(1, 1).unwrap();
        tree.check_invariants().unwrap();
    }

    #[test]
    fn debug_lists_entries_in_order() {
        let mut tree = RbTree::new();
        tree.insert(2u64, 'b').unwrap();
        tree.insert(1, 'a').unwrap();
        assert_eq!(std::format!("{tree:?}"), "{1: 'a', 2: 'b'}");
        let e = InvariantError::RedRoot;
        assert_eq!(
            std::format!("{e}"),
            "red-black tree invariant violated: root node is red"
        );
    }

    /// Each corruption must be reported: a checker that cannot fail checks nothing.
    #[test]
    fn check_invariants_detects_corruption() {
        let (base, ids) = seven();
        assert!(base.check_invariants().is_ok());
        let root = NodeId(base.root);

        let mut t = base.clone();
        t.node_for_test(root).color = Color::Red;
        assert_eq!(t.check_invariants(), Err(InvariantError::RedRoot));

        let mut t = base.clone();
        t.node_for_test(root).parent = ids[0].0;
        assert_eq!(t.check_invariants(), Err(InvariantError::RootHasParent));

        // Ascending inserts of 1..=7 leave 7 as a red leaf under black 6.
        let mut t = base.clone();
        assert_eq!(t.node(ids[6].0).color, Color::Red);
        t.node_for_test(ids[5]).color = Color::Red;
        let r = t.check_invariants();
        assert!(
            matches!(
                r,
                Err(InvariantError::RedChildOfRed | InvariantError::UnequalBlackHeight)
            ),
            "{r:?}"
        );

        let mut t = base.clone();
        t.node_for_test(ids[6]).color = Color::Black;
        assert_eq!(
            t.check_invariants(),
            Err(InvariantError::UnequalBlackHeight)
        );

        let mut t = base.clone();
        t.node_for_test(ids[0]).key = 100;
        assert_eq!(t.check_invariants(), Err(InvariantError::KeyOrder));

        let mut t = base.clone();
        t.node_for_test(ids[6]).parent = ids[0].0;
        assert_eq!(t.check_invariants(), Err(InvariantError::ParentLink));

        let mut t = base.clone();
        t.node_for_test(ids[0]).left = 1000;
        assert_eq!(t.check_invariants(), Err(InvariantError::DanglingLink));

        let mut t = base.clone();
        t.len += 1;
        assert_eq!(t.check_invariants(), Err(InvariantError::LengthMismatch));

        // A node that is occupied but unreachable from the root.
        let mut t = base.clone();
        let parent = t.node(ids[6].0).parent;
        t.node_for_test(NodeId(parent)).right = NIL;
        assert_eq!(t.check_invariants(), Err(InvariantError::LengthMismatch));

        // Free list: a loop, a dropped vacant slot, and an occupied slot on the list.
        let mut t = base.clone();
        t.remove(ids[0]);
        t.remove(ids[6]);
        t.check_invariants().unwrap();
        let mut looped = t.clone();
        looped.slots[ids[0].0 as usize] = Slot::Vacant {
            next_free: ids[6].0,
        };
        assert_eq!(looped.check_invariants(), Err(InvariantError::FreeList));
        let mut dropped = t.clone();
        dropped.free_head = NIL;
        assert_eq!(dropped.check_invariants(), Err(InvariantError::FreeList));
        let mut occupied = t.clone();
        occupied.slots[ids[6].0 as usize] = Slot::Vacant {
            next_free: ids[3].0,
        };
        assert_eq!(occupied.check_invariants(), Err(InvariantError::FreeList));
    }

    #[derive(Clone, Debug)]
    enum Op {
        Insert(u64, u32),
        /// Remove the live key at this position (modulo the count), if any.
        RemoveNth(usize),
        Find(u64),
        FirstAfter(u64),
        IterAfter(u64),
        Clear,
    }

    fn op() -> impl Strategy<Value = Op> {
        // Keys from a small range so inserts collide and lookups hit.
        let key = prop_oneof![4 => 0u64..64, 1 => any::<u64>()];
        prop_oneof![
            8 => (key.clone(), any::<u32>()).prop_map(|(k, v)| Op::Insert(k, v)),
            5 => any::<usize>().prop_map(Op::RemoveNth),
            2 => key.clone().prop_map(Op::Find),
            2 => key.clone().prop_map(Op::FirstAfter),
            1 => key.prop_map(Op::IterAfter),
            1 => Just(Op::Clear),
        ]
    }

    proptest! {
        /// The tree behaves as a `BTreeMap`, keeps its invariants after every step, and every
        /// handle keeps naming its own entry.
        #[test]
        fn matches_btreemap_model(ops in proptest::collection::vec(op(), 1..300)) {
            let mut tree = RbTree::new();
            let mut model: BTreeMap<u64, (u32, NodeId)> = BTreeMap::new();
            for op in ops {
                match op {
                    Op::Insert(k, v) => match tree.insert(k, v) {
                        Ok(id) => {
                            prop_assert!(model.insert(k, (v, id)).is_none());
                        }
                        Err(back) => {
                            prop_assert_eq!(back, (k, v));
                            prop_assert!(model.contains_key(&k));
                        }
                    },
                    Op::RemoveNth(n) => {
                        if !model.is_empty() {
                            let k = *model.keys().nth(n % model.len()).unwrap();
                            let (v, id) = model.remove(&k).unwrap();
                            prop_assert_eq!(tree.remove(id), (k, v));
                            prop_assert_eq!(tree.get(id), None);
                        }
                    }
                    Op::Find(k) => {
                        prop_assert_eq!(tree.find(&k), model.get(&k).map(|&(_, id)| id));
                    }
                    Op::FirstAfter(k) => {
                        let expected = model.range((Bound::Excluded(k), Bound::Unbounded)).next();
                        prop_assert_eq!(tree.first_after(&k), expected.map(|(_, &(_, id))| id));
                    }
                    Op::IterAfter(k) => {
                        let got: Vec<_> = tree.iter_after(&k).map(|(id, k, v)| (*k, *v, id)).collect();
                        let want: Vec<_> = model
                            .iter()
                            .filter(|&(&mk, _)| mk > k)
                            .map(|(&mk, &(v, id))| (mk, v, id))
                            .collect();
                        prop_assert_eq!(got, want);
                    }
                    Op::Clear => {
                        tree.clear();
                        model.clear();
                    }
                }
                tree.check_invariants().map_err(|e| TestCaseError::fail(std::format!("{e}")))?;
                prop_assert_eq!(tree.len(), model.len());
                let got: Vec<_> = tree.iter().map(|(id, k, v)| (*k, *v, id)).collect();
                let want: Vec<_> = model.iter().map(|(&k, &(v, id))| (k, v, id)).collect();
                prop_assert_eq!(got, want);
                for (&k, &(v, id)) in &model {
                    prop_assert_eq!(tree.get(id), Some((&k, &v)));
                }
                prop_assert_eq!(
                    tree.first().map(|id| *tree.get(id).unwrap().0),
                    model.keys().next().copied()
                );
                prop_assert_eq!(
                    tree.last().map(|id| *tree.get(id).unwrap().0),
                    model.keys().next_back().copied()
                );
            }
        }
    }
}
