//! The per-tenant Merkle tree over audit entries, hashed as RFC 6962 / RFC 9162 §2.1 (and the
//! C2SP tlog specifications) define it: a leaf is `SHA-256(0x00 ‖ data)`, an interior node
//! `SHA-256(0x01 ‖ left ‖ right)`, a tree of `n` leaves splits at the largest power of two
//! below `n`, and the empty tree's root is `SHA-256("")`. A leaf's data is the 32-byte hash of
//! one audit entry (which already binds the entry before it).
//!
//! Written here rather than taken from a crate because the standalone verifier must depend on
//! this crate alone, and because the server needs an incremental [`Frontier`] (O(log n) state
//! per tenant) rather than a tree held in memory. The algorithms are the RFC's, and the tests
//! check them against the RFC 6962 vectors used by transparency-dev and against an independent
//! verifier (CI).

use sha2::{Digest, Sha256};

/// A node or leaf hash.
pub type Hash = [u8; 32];

/// Why a proof did not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    #[error("index {index} is not below the tree size {size}")]
    IndexOutOfRange { index: u64, size: u64 },
    #[error("the proof has the wrong number of hashes for these sizes")]
    WrongLength,
    #[error("the proof does not lead to the given root")]
    RootMismatch,
    #[error("the old tree ({old}) is larger than the new tree ({new})")]
    SizesReversed { old: u64, new: u64 },
}

/// The hash of a leaf with these bytes.
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(data);
    h.finalize().into()
}

/// The hash of an interior node.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The root of the empty tree.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// The largest power of two strictly below `n` (n ≥ 2).
fn split(n: usize) -> usize {
    debug_assert!(n >= 2);
    1 << (usize::BITS - 1 - (n - 1).leading_zeros())
}

/// The root of a tree over these leaf hashes (RFC 9162 MTH).
pub fn root(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => empty_root(),
        1 => leaves[0],
        n => {
            let k = split(n);
            node_hash(&root(&leaves[..k]), &root(&leaves[k..]))
        }
    }
}

/// The inclusion proof of leaf `index` in the tree over `leaves` (RFC 9162 PATH).
pub fn inclusion_proof(leaves: &[Hash], index: u64) -> Result<Vec<Hash>, ProofError> {
    let size = leaves.len() as u64;
    let Ok(m) = usize::try_from(index) else {
        return Err(ProofError::IndexOutOfRange { index, size });
    };
    if m >= leaves.len() {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    let mut proof = Vec::new();
    path(m, leaves, &mut proof);
    Ok(proof)
}

fn path(m: usize, leaves: &[Hash], out: &mut Vec<Hash>) {
    let n = leaves.len();
    if n <= 1 {
        return;
    }
    let k = split(n);
    if m < k {
        path(m, &leaves[..k], out);
        out.push(root(&leaves[k..]));
    } else {
        path(m - k, &leaves[k..], out);
        out.push(root(&leaves[..k]));
    }
}

/// The consistency proof between the tree of the first `old_size` leaves and the tree over all
/// of `leaves` (RFC 9162 PROOF).
pub fn consistency_proof(leaves: &[Hash], old_size: u64) -> Result<Vec<Hash>, ProofError> {
    let new = leaves.len() as u64;
    let m = usize::try_from(old_size)
        .ok()
        .filter(|m| *m <= leaves.len())
        .ok_or(ProofError::SizesReversed { old: old_size, new })?;
    let mut proof = Vec::new();
    if m > 0 {
        subproof(m, leaves, true, &mut proof);
    }
    Ok(proof)
}

fn subproof(m: usize, leaves: &[Hash], complete: bool, out: &mut Vec<Hash>) {
    let n = leaves.len();
    if m == n {
        if !complete {
            out.push(root(leaves));
        }
        return;
    }
    let k = split(n);
    if m <= k {
        subproof(m, &leaves[..k], complete, out);
        out.push(root(&leaves[k..]));
    } else {
        subproof(m - k, &leaves[k..], false, out);
        out.push(root(&leaves[..k]));
    }
}

/// Check that `leaf` is leaf `index` of the tree of `size` leaves with root `root`
/// (RFC 9162 §2.1.3.2).
pub fn verify_inclusion(
    leaf: &Hash,
    index: u64,
    size: u64,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), ProofError> {
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    let (mut fn_, mut sn) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if sn == 0 {
            return Err(ProofError::WrongLength);
        }
        if fn_ & 1 == 1 || fn_ == sn {
            r = node_hash(p, &r);
            while fn_ & 1 == 0 && fn_ != 0 {
                fn_ >>= 1;
                sn >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    if sn != 0 {
        return Err(ProofError::WrongLength);
    }
    if r != *root {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

/// Check that the tree of `old_size` leaves with root `old_root` is a prefix of the tree of
/// `new_size` leaves with root `new_root` (RFC 9162 §2.1.4.2).
pub fn verify_consistency(
    old_size: u64,
    new_size: u64,
    proof: &[Hash],
    old_root: &Hash,
    new_root: &Hash,
) -> Result<(), ProofError> {
    if old_size > new_size {
        return Err(ProofError::SizesReversed {
            old: old_size,
            new: new_size,
        });
    }
    if old_size == new_size {
        if !proof.is_empty() {
            return Err(ProofError::WrongLength);
        }
        return if old_root == new_root {
            Ok(())
        } else {
            Err(ProofError::RootMismatch)
        };
    }
    if old_size == 0 {
        // The empty tree is a prefix of every tree; there is nothing to prove.
        return if proof.is_empty() {
            Ok(())
        } else {
            Err(ProofError::WrongLength)
        };
    }
    let Some((first, rest)) = proof.split_first() else {
        return Err(ProofError::WrongLength);
    };
    let mut path: Vec<&Hash> = Vec::with_capacity(proof.len() + 1);
    if old_size.is_power_of_two() {
        path.push(old_root);
        path.push(first);
    } else {
        path.push(first);
    }
    path.extend(rest);
    let (mut fn_, mut sn) = (old_size - 1, new_size - 1);
    while fn_ & 1 == 1 {
        fn_ >>= 1;
        sn >>= 1;
    }
    let (mut fr, mut sr) = (*path[0], *path[0]);
    for c in &path[1..] {
        if sn == 0 {
            return Err(ProofError::WrongLength);
        }
        if fn_ & 1 == 1 || fn_ == sn {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            while fn_ & 1 == 0 && fn_ != 0 {
                fn_ >>= 1;
                sn >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    if sn != 0 {
        return Err(ProofError::WrongLength);
    }
    if fr != *old_root || sr != *new_root {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

/// The right edge of a tree: the roots of its perfect subtrees, largest first. Enough to append
/// leaves and compute the root at any size without the leaves themselves (O(log n) hashes).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Frontier {
    size: u64,
    /// (height, hash) of each perfect subtree, left to right; heights strictly decrease.
    nodes: Vec<(u32, Hash)>,
}

impl Frontier {
    pub fn new() -> Self {
        Self::default()
    }

    /// Leaves appended so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Append one leaf hash.
    pub fn push(&mut self, leaf: Hash) {
        let mut node = (0u32, leaf);
        while let Some(&(height, left)) = self.nodes.last() {
            if height != node.0 {
                break;
            }
            self.nodes.pop();
            node = (height + 1, node_hash(&left, &node.1));
        }
        self.nodes.push(node);
        self.size += 1;
    }

    /// The root of the tree so far.
    pub fn root(&self) -> Hash {
        let mut nodes = self.nodes.iter().rev();
        let Some(&(_, mut acc)) = nodes.next() else {
            return empty_root();
        };
        for (_, left) in nodes {
            acc = node_hash(left, &acc);
        }
        acc
    }

    /// Hex form for storage: the subtree hashes joined by `,` (their heights follow from the
    /// size).
    pub fn to_hex(&self) -> String {
        self.nodes
            .iter()
            .map(|(_, h)| hex::encode(h))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Read a stored frontier of `size` leaves; `None` when the text does not fit the size.
    pub fn from_hex(size: u64, text: &str) -> Option<Self> {
        let hashes: Vec<&str> = if text.is_empty() {
            Vec::new()
        } else {
            text.split(',').collect()
        };
        if hashes.len() != size.count_ones() as usize {
            return None;
        }
        let heights = (0..u64::BITS).rev().filter(|bit| size >> bit & 1 == 1);
        let mut nodes = Vec::with_capacity(hashes.len());
        for (height, text) in heights.zip(hashes) {
            let mut hash = [0u8; 32];
            hex::decode_to_slice(text, &mut hash).ok()?;
            nodes.push((height, hash));
        }
        Some(Self { size, nodes })
    }
}

/// Parse a 64-character hex hash.
pub fn parse_hash(text: &str) -> Option<Hash> {
    let mut hash = [0u8; 32];
    hex::decode_to_slice(text, &mut hash).ok()?;
    Some(hash)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The leaves and roots of the RFC 6962 test tree used by certificate-transparency and
    /// transparency-dev (`testonly/constants.go`): leaf data, then the root at sizes 1..=8.
    const LEAVES: [&str; 8] = [
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    ];
    const ROOTS: [&str; 8] = [
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ];

    fn leaves() -> Vec<Hash> {
        LEAVES
            .iter()
            .map(|l| leaf_hash(&hex::decode(l).unwrap()))
            .collect()
    }

    fn h(text: &str) -> Hash {
        parse_hash(text).unwrap()
    }

    #[test]
    fn roots_match_the_rfc_6962_vectors() {
        assert_eq!(
            hex::encode(empty_root()),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        let leaves = leaves();
        let mut frontier = Frontier::new();
        for (n, expected) in ROOTS.iter().enumerate() {
            frontier.push(leaves[n]);
            assert_eq!(
                hex::encode(root(&leaves[..=n])),
                *expected,
                "size {}",
                n + 1
            );
            assert_eq!(
                hex::encode(frontier.root()),
                *expected,
                "frontier size {}",
                n + 1
            );
            let stored = Frontier::from_hex(frontier.size(), &frontier.to_hex()).unwrap();
            assert_eq!(stored, frontier);
        }
        assert!(Frontier::from_hex(3, &frontier.to_hex()).is_none());
    }

    #[test]
    fn proofs_match_the_rfc_6962_vectors() {
        let leaves = leaves();
        // Inclusion of leaf index 5 (0-based) in the tree of 8 (transparency-dev proofgen).
        let proof = inclusion_proof(&leaves, 5).unwrap();
        assert_eq!(
            proof,
            [
                h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
                h("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
                h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
            ]
        );
        verify_inclusion(&leaves[5], 5, 8, &proof, &h(ROOTS[7])).unwrap();
        // Consistency 6 -> 8 is [MTH(4..6), MTH(6..8), MTH(0..4)].
        let proof = consistency_proof(&leaves, 6).unwrap();
        assert_eq!(
            proof,
            [
                root(&leaves[4..6]),
                root(&leaves[6..8]),
                root(&leaves[0..4])
            ]
        );
        verify_consistency(6, 8, &proof, &h(ROOTS[5]), &h(ROOTS[7])).unwrap();
        assert_eq!(
            consistency_proof(&leaves, 4).unwrap(),
            [root(&leaves[4..8])]
        );
    }

    #[test]
    fn every_proof_verifies_and_every_tampered_one_fails() {
        let leaves: Vec<Hash> = (0u16..40).map(|i| leaf_hash(&i.to_be_bytes())).collect();
        for n in 1..=leaves.len() {
            let tree = &leaves[..n];
            let r = root(tree);
            for i in 0..n {
                let proof = inclusion_proof(tree, i as u64).unwrap();
                verify_inclusion(&tree[i], i as u64, n as u64, &proof, &r).unwrap();
                assert!(verify_inclusion(&tree[i], n as u64, n as u64, &proof, &r).is_err());
                if let Some(first) = proof.first() {
                    let mut bad = proof.clone();
                    bad[0] = leaf_hash(first);
                    assert!(verify_inclusion(&tree[i], i as u64, n as u64, &bad, &r).is_err());
                    assert!(
                        verify_inclusion(&tree[i], i as u64, n as u64, &proof[1..], &r).is_err()
                    );
                }
                if n > 1 {
                    let other = (i + 1) % n;
                    assert!(
                        verify_inclusion(&tree[other], i as u64, n as u64, &proof, &r).is_err()
                    );
                }
            }
            for m in 0..=n {
                let proof = consistency_proof(tree, m as u64).unwrap();
                let old = root(&tree[..m]);
                verify_consistency(m as u64, n as u64, &proof, &old, &r).unwrap();
                if m > 0 && m < n {
                    let wrong_old = root(&tree[..m - 1]);
                    assert!(
                        verify_consistency(m as u64, n as u64, &proof, &wrong_old, &r).is_err()
                    );
                    assert!(verify_consistency(m as u64, n as u64, &proof, &old, &old).is_err());
                    assert!(verify_consistency(m as u64, n as u64, &proof[1..], &old, &r).is_err());
                }
            }
        }
    }
}
