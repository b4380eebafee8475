//! What a request costs in each build: the deterministic randomness, the fake nodes that serve
//! requests, and the CPU work of pricing a cart.
//!
//! Everything here is pure and deterministic (a SplitMix64 generator with fixed seeds), so the
//! regression the demo shows is the same on every run; only wall-clock latencies vary. The cost
//! of a checkout is counted in *work units* (bytes hashed), which tests compare instead of
//! timing anything.

/// The fake nodes a request is served by (the span attribute `host.name`).
pub const NODES: [&str; 4] = ["node-1", "node-2", "node-3", "node-4"];

/// The node on which the candidate's slowness concentrates, so attribute correlation has
/// something true to find.
pub const SLOW_NODE: &str = "node-3";

/// Pricing passes over the cart per checkout in the baseline build.
pub const BASELINE_ROUNDS: u32 = 48;
/// Pricing passes in the candidate build on every node but [`SLOW_NODE`] (2×).
pub const CANDIDATE_ROUNDS: u32 = 96;
/// Pricing passes in the candidate build on [`SLOW_NODE`] (4×). Over the four nodes the
/// candidate does 2.5× the baseline's pricing work on average, so `price_items`, about 60% of
/// the baseline's CPU samples, takes about 80% of the candidate's: a change the CPU-share test
/// is sure of with four ~3 s profiles per build at 100 Hz even on a busy machine. At 1.75×
/// (1.5×/2.5×) the change was +10 to +19 pp alone on the machine but once only +7 pp (92%
/// confidence) with two other CPU-bound processes beside it.
pub const CANDIDATE_SLOW_NODE_ROUNDS: u32 = 192;

/// Bytes of description per cart item (a cart of 8 to 24 items holds a few KB).
pub const ITEM_BYTES: usize = 256;

/// Which build of the demo service runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Build {
    /// `service.version` 1.0.0: the build the contract's baseline names.
    Baseline,
    /// `service.version` 1.1.0: checkout is slower (more CPU in `price_items`, worst on
    /// [`SLOW_NODE`]) and fails more often (3% instead of 0.5%); the cart is unchanged.
    Candidate,
}

impl Build {
    /// The `service.version` of the build.
    pub fn version(self) -> &'static str {
        match self {
            Build::Baseline => "1.0.0",
            Build::Candidate => "1.1.0",
        }
    }

    /// How many pricing passes a checkout served by `node` makes.
    pub fn pricing_rounds(self, node: &str) -> u32 {
        match self {
            Build::Baseline => BASELINE_ROUNDS,
            Build::Candidate if node == SLOW_NODE => CANDIDATE_SLOW_NODE_ROUNDS,
            Build::Candidate => CANDIDATE_ROUNDS,
        }
    }

    /// The probability that a checkout fails with a 5xx.
    pub fn checkout_error_rate(self) -> f64 {
        match self {
            Build::Baseline => 0.005,
            Build::Candidate => 0.03,
        }
    }

    /// The seed of the server's per-request randomness (the same for both builds, so they see
    /// the same sequence of carts and nodes).
    pub fn seed(self) -> u64 {
        0x5EED_DE30_C0DE_0001
    }
}

/// SplitMix64 (Steele, Lea and Flood 2014): tiny, fast, and good enough for a workload.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator starting from `seed`.
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n > 0`; the tiny modulo bias does not matter here).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// A uniform number in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }
}

/// One line of a cart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    /// Stock-keeping unit number.
    pub sku: u32,
    /// How many.
    pub quantity: u32,
    /// List price of one, in cents.
    pub unit_cents: u64,
    /// Free text the pricing rules read ([`ITEM_BYTES`] bytes).
    pub description: Vec<u8>,
}

/// A cart of 8 to 24 items drawn from `rng`.
pub fn cart(rng: &mut SplitMix64) -> Vec<Item> {
    let len = 8 + rng.below(17) as usize;
    (0..len)
        .map(|_| Item {
            sku: rng.below(100_000) as u32,
            quantity: 1 + rng.below(4) as u32,
            unit_cents: 199 + rng.below(20_000),
            description: (0..ITEM_BYTES / 8).flat_map(|_| rng.next_u64().to_le_bytes()).collect(),
        })
        .collect()
}

/// What pricing a cart computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Priced {
    /// Sum after discounts, in cents.
    pub total_cents: u64,
    /// A digest of every pass (what a real service would sign the quote with).
    pub digest: u64,
    /// Bytes hashed: the work done, comparable across builds without timing anything.
    pub work_units: u64,
}

/// Prices a cart: `rounds` passes of the pricing rules, each hashing every item's description
/// (FNV-1a) to pick that item's discount. This is the CPU-heavy function the profiles must
/// show by name, so it is never inlined; the candidate build calls it with more rounds.
///
/// The byte loop is written with indexing and a `u128` product rather than iterators and
/// `wrapping_mul`, so that even in an unoptimized build (the workspace's own crates are not
/// optimized in `dev`) its CPU time is *self* time of `price_items` instead of being spread
/// over non-inlined iterator and integer helpers.
#[inline(never)]
pub fn price_items(items: &[Item], rounds: u32) -> Priced {
    const FNV_PRIME: u128 = 0x0000_0100_0000_01B3;
    let mut digest: u64 = 0xCBF2_9CE4_8422_2325;
    let mut total_cents = 0;
    let mut work_units = 0;
    let mut round = 0;
    while round < rounds {
        total_cents = 0;
        for item in items {
            let description = std::hint::black_box(item.description.as_slice());
            let mut h = digest ^ u64::from(round) ^ u64::from(item.sku);
            let mut i = 0;
            while i < description.len() {
                h ^= description[i] as u64;
                h = (h as u128 * FNV_PRIME) as u64;
                i += 1;
            }
            work_units += description.len() as u64;
            digest = digest.rotate_left(5) ^ h;
            let discount_percent = h % 16;
            total_cents += item.unit_cents * u64::from(item.quantity) * (100 - discount_percent) / 100;
        }
        round += 1;
    }
    Priced { total_cents, digest, work_units }
}

/// Whether the checkout of request `seed` fails at the payment step (at the build's error
/// rate). Drawn apart from the cart, so the failure draw does not depend on the cart's size.
pub fn checkout_fails(build: Build, seed: u64) -> bool {
    SplitMix64::new(seed ^ 0xFA11_FA11_FA11_FA11).chance(build.checkout_error_rate())
}

/// Sums a cart for display: the cheap work of `GET /api/cart`, the same in both builds.
#[inline(never)]
pub fn cart_summary(items: &[Item]) -> (u64, u32) {
    items.iter().fold((0, 0), |(cents, count), item| {
        (cents + item.unit_cents * u64::from(item.quantity), count + item.quantity)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generator_is_deterministic_and_spread() {
        let mut a = SplitMix64::new(7);
        let mut b = SplitMix64::new(7);
        let xs: Vec<u64> = (0..100).map(|_| a.next_u64()).collect();
        let ys: Vec<u64> = (0..100).map(|_| b.next_u64()).collect();
        assert_eq!(xs, ys);
        let mut rng = SplitMix64::new(1);
        let hits = (0..100_000).filter(|_| rng.chance(0.03)).count();
        assert!((2_500..3_500).contains(&hits), "{hits}");
    }

    #[test]
    fn candidate_averages_two_and_a_half_times_the_rounds() {
        let base: u32 = NODES.iter().map(|n| Build::Baseline.pricing_rounds(n)).sum();
        let cand: u32 = NODES.iter().map(|n| Build::Candidate.pricing_rounds(n)).sum();
        let ratio = f64::from(cand) / f64::from(base);
        assert!((2.45..2.55).contains(&ratio), "{ratio}");
    }

    #[test]
    fn candidate_fails_more_checkouts() {
        let failures = |build| (0..100_000u64).filter(|&seed| checkout_fails(build, seed)).count();
        let (base, cand) = (failures(Build::Baseline), failures(Build::Candidate));
        assert!((400..600).contains(&base), "baseline {base}");
        assert!((2_700..3_300).contains(&cand), "candidate {cand}");
    }

    #[test]
    fn pricing_is_deterministic_and_counts_work() {
        let items = cart(&mut SplitMix64::new(3));
        let a = price_items(&items, 10);
        assert_eq!(a, price_items(&items, 10));
        assert_eq!(a.work_units, 10 * (items.len() * ITEM_BYTES) as u64);
        assert!(a.total_cents > 0);
    }
}
