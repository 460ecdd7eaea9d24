//! The benchmarks' workload: the keys, the values and the order the pairs arrive in, for
//! `cargo bench --bench hashdir` and `hashdir bench` alike, so that their figures compare.
//! Part of no API: public only for those two programs.

use crate::{Key, Value};

/// How a workload's pairs arrive.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Shape {
    /// Each key's values together.
    KeyMajor,
    /// One value for every key per round.
    Rounds,
    /// Keys drawn from a Zipf law of this exponent.
    Zipf(f64),
}

/// Key `i`: a mixed-up counter, so keys look random but are reproducible in every process.
pub fn key(i: u64) -> Key {
    let mut x = i.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0x5851_f42d_4c95_7f2d;
    x ^= x >> 29;
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&x.to_le_bytes());
    k[8..].copy_from_slice(&i.to_le_bytes());
    k
}

/// Value `j` of key `i`; its first 8 bytes are `i`, so a lookup can check what it found.
pub fn value(i: u64, j: u64) -> Value {
    let mut v = [0u8; 16];
    v[..8].copy_from_slice(&i.to_le_bytes());
    v[8..].copy_from_slice(&j.to_le_bytes());
    v
}

/// xorshift64: the random key indices of lookups and Zipf draws.
#[derive(Clone, Debug)]
pub struct Picks(u64);

impl Picks {
    /// The sequence of `seed`; each seed gives its own.
    pub fn new(seed: u64) -> Picks {
        Picks(seed.wrapping_mul(0x2545_f491_4f6c_dd1d) | 1)
    }

    /// The next number of the sequence.
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A key index below `n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The pairs of a workload in the order they arrive: pair `p` is (key index, value).
pub struct Pairs {
    shape: Shape,
    keys: u64,
    per_key: u64,
    zipf: Option<Zipf>,
    picks: Picks,
}

impl Pairs {
    /// `keys` keys with `per_key` values each on average (`per_key` ≥ 1): `keys * per_key`
    /// pairs.
    pub fn new(shape: Shape, keys: u64, per_key: u64) -> Pairs {
        Pairs {
            shape,
            keys,
            per_key: per_key.max(1),
            zipf: match shape {
                Shape::Zipf(e) => Some(Zipf::new(keys, e)),
                _ => None,
            },
            picks: Picks(0x2545_f491_4f6c_dd1d),
        }
    }

    /// How many pairs the workload has.
    pub fn len(&self) -> u64 {
        self.keys * self.per_key
    }

    /// Whether the workload has no pairs.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Pair `p`, asked for in order from 0 (a Zipf workload draws its keys in sequence).
    pub fn get(&mut self, p: u64) -> (u64, Value) {
        match self.shape {
            Shape::KeyMajor => {
                let (i, j) = (p / self.per_key, p % self.per_key);
                (i, value(i, j))
            }
            Shape::Rounds => {
                let (i, j) = (p % self.keys, p / self.keys);
                (i, value(i, j))
            }
            Shape::Zipf(_) => {
                let picks = &mut self.picks;
                // Rank r is key r - 1: keys are mixed counters, so the big sets land anywhere.
                let zipf = self.zipf.as_ref().expect("a Zipf shape has its law");
                let i = zipf.sample(|| picks.unit()) - 1;
                (i, value(i, p))
            }
        }
    }

    /// Pairs `from..to` appended to `keys` and `values`.
    pub fn fill(&mut self, from: u64, to: u64, keys: &mut Vec<Key>, values: &mut Vec<Value>) {
        for p in from..to {
            let (i, v) = self.get(p);
            keys.push(key(i));
            values.push(v);
        }
    }
}

/// Rejection-inversion sampling of a Zipf law over ranks 1..=n (Hörmann and Derflinger,
/// "Rejection-inversion to generate variates from monotone discrete distributions", 1996;
/// as in Apache Commons RNG): O(1) per draw for any n.
struct Zipf {
    n: f64,
    e: f64,
    h_x1: f64,
    h_n: f64,
    s: f64,
}
impl Zipf {
    fn new(n: u64, e: f64) -> Zipf {
        let mut z = Zipf {
            n: n as f64,
            e,
            h_x1: 0.0,
            h_n: 0.0,
            s: 0.0,
        };
        z.h_x1 = z.h_integral(1.5) - 1.0;
        z.h_n = z.h_integral(n as f64 + 0.5);
        z.s = 2.0 - z.h_integral_inv(z.h_integral(2.5) - z.h(2.0));
        z
    }

    fn h(&self, x: f64) -> f64 {
        (-self.e * x.ln()).exp()
    }

    fn h_integral(&self, x: f64) -> f64 {
        let l = x.ln();
        helper2((1.0 - self.e) * l) * l
    }

    fn h_integral_inv(&self, x: f64) -> f64 {
        let t = (x * (1.0 - self.e)).max(-1.0);
        (helper1(t) * x).exp()
    }

    /// A rank in 1..=n; `u` uniform in [0, 1).
    fn sample(&self, mut u: impl FnMut() -> f64) -> u64 {
        loop {
            let v = self.h_n + u() * (self.h_x1 - self.h_n);
            let x = self.h_integral_inv(v);
            let k = (x + 0.5).floor().clamp(1.0, self.n);
            if k - x <= self.s || v >= self.h_integral(k + 0.5) - self.h(k) {
                return k as u64;
            }
        }
    }
}

fn helper1(x: f64) -> f64 {
    if x.abs() > 1e-8 {
        x.ln_1p() / x
    } else {
        1.0 - x * (0.5 - x * (1.0 / 3.0 - 0.25 * x))
    }
}

fn helper2(x: f64) -> f64 {
    if x.abs() > 1e-8 {
        x.exp_m1() / x
    } else {
        1.0 + x * 0.5 * (1.0 + x / 3.0 * (1.0 + 0.25 * x))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// Recorded figures were measured on these exact keys and draws: the generator must not
    /// drift.
    #[test]
    fn keys_and_draws_stay_as_recorded() {
        let hex = |b: [u8; 16]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
        assert_eq!(hex(key(0)), "47de1a8e2ff451580000000000000000");
        assert_eq!(hex(key(12345)), "b05fa4c901167df93930000000000000");
        assert_eq!(hex(value(3, 5)), "03000000000000000500000000000000");
        let mut p = Picks::new(1);
        assert_eq!(
            [p.next(), p.next()],
            [9181757771948286951, 16460966181113277408]
        );
        let mut z = Pairs::new(Shape::Zipf(1.0), 1000, 10);
        let draws: Vec<u64> = (0..8).map(|p| z.get(p).0).collect();
        assert_eq!(draws, [23, 0, 210, 54, 0, 683, 623, 392]);
    }

    /// Key-major and round workloads hold each of a key's values once; so does a Zipf one,
    /// whose draws favour the low ranks.
    #[test]
    fn every_shape_gives_its_pairs() {
        for shape in [Shape::KeyMajor, Shape::Rounds] {
            let mut w = Pairs::new(shape, 50, 3);
            let (mut keys, mut values) = (Vec::new(), Vec::new());
            w.fill(0, w.len(), &mut keys, &mut values);
            let mut seen: HashMap<Key, Vec<Value>> = HashMap::new();
            for (k, v) in keys.iter().zip(&values) {
                seen.entry(*k).or_default().push(*v);
            }
            assert_eq!(seen.len(), 50, "{shape:?}");
            for i in 0..50 {
                let mut got = seen[&key(i)].clone();
                got.sort();
                let want: Vec<Value> = (0..3).map(|j| value(i, j)).collect();
                assert_eq!(got, want, "{shape:?}: key {i}");
            }
        }
        let mut z = Pairs::new(Shape::Zipf(1.0), 1000, 20);
        let mut hits = vec![0u64; 1000];
        for p in 0..z.len() {
            let (i, v) = z.get(p);
            assert_eq!(v, value(i, p));
            hits[i as usize] += 1;
        }
        assert!(hits[0] > 10 * hits[99].max(1), "{:?}", &hits[..100]);
    }
}
