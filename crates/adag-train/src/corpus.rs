//! The demo corpus: short texts for the tasks whose circuits the tracing literature studies,
//! generated deterministically from a seed, with held-out prompts for each task.
//!
//! Tasks and their held-out splits:
//! - **two-hop factual recall** (cities → states → capitals). For every state two cities are
//!   held out of the *two-hop* sentences ("The capital of the state containing Dallas is
//!   Austin."), while their one-hop facts ("Dallas is in Texas.", "The state containing Dallas
//!   is Texas.") and the state's capital fact are trained, and the state's other cities appear
//!   in two-hop sentences. Composition can therefore only come from an internal two-step
//!   lookup, the circuit studied in "On the Biology of a Large Language Model" (2025).
//! - **two-digit addition** ("36+59=95."): about 5% of the 8100 pairs never appear.
//! - **subject–verb agreement across a distractor** ("The keys to the cabinet are"): six
//!   held-out subject nouns never appear with a distractor of the *opposite* number (the
//!   attraction case that is evaluated); they occur in simple sentences ("The horses are
//!   old.") and with same-number distractors ("The horses near the farms are old."), so their
//!   number is learnt but never the rule's hard case.
//! - **filler**: simple narrative sentences, so the model is a language model rather than a
//!   lookup table.

use crate::rng::Rng;

/// `(state, capital, cities)`. Single-word names, so each is one or few BPE tokens.
pub const STATES: &[(&str, &str, [&str; 5])] = &[
    (
        "Texas",
        "Austin",
        ["Dallas", "Houston", "Plano", "Waco", "Lubbock"],
    ),
    (
        "California",
        "Sacramento",
        ["Oakland", "Fresno", "Pasadena", "Burbank", "Modesto"],
    ),
    (
        "Illinois",
        "Springfield",
        ["Chicago", "Peoria", "Naperville", "Evanston", "Joliet"],
    ),
    (
        "Florida",
        "Tallahassee",
        ["Miami", "Orlando", "Tampa", "Jacksonville", "Sarasota"],
    ),
    (
        "Georgia",
        "Atlanta",
        ["Savannah", "Augusta", "Macon", "Athens", "Valdosta"],
    ),
    (
        "Ohio",
        "Columbus",
        ["Cleveland", "Cincinnati", "Toledo", "Dayton", "Akron"],
    ),
    (
        "Washington",
        "Olympia",
        ["Seattle", "Spokane", "Tacoma", "Bellevue", "Yakima"],
    ),
    (
        "Pennsylvania",
        "Harrisburg",
        [
            "Philadelphia",
            "Pittsburgh",
            "Erie",
            "Scranton",
            "Allentown",
        ],
    ),
    (
        "Arizona",
        "Phoenix",
        ["Tucson", "Mesa", "Flagstaff", "Tempe", "Yuma"],
    ),
    (
        "Oregon",
        "Salem",
        ["Portland", "Eugene", "Bend", "Medford", "Corvallis"],
    ),
    (
        "Colorado",
        "Denver",
        ["Boulder", "Pueblo", "Greeley", "Durango", "Loveland"],
    ),
    (
        "Tennessee",
        "Nashville",
        [
            "Memphis",
            "Knoxville",
            "Chattanooga",
            "Clarksville",
            "Franklin",
        ],
    ),
    (
        "Wisconsin",
        "Madison",
        ["Milwaukee", "Kenosha", "Racine", "Appleton", "Oshkosh"],
    ),
    (
        "Michigan",
        "Lansing",
        ["Detroit", "Flint", "Kalamazoo", "Saginaw", "Dearborn"],
    ),
];

/// Whether city `c` of state `s` is held out of the two-hop sentences. Dallas (Texas, city 0)
/// is held out on purpose: it is the README's example prompt, so its circuit is a true
/// composition rather than a memorised sentence.
pub fn two_hop_held_out(s: usize, c: usize) -> bool {
    c == s % 5 || c == (s + 2) % 5
}

/// Whether the addition `a+b` is held out (about 1 in 20 pairs, by a fixed hash).
pub fn addition_held_out(a: u32, b: u32) -> bool {
    let mut h = (a as u64) * 1_000_003 + (b as u64) * 7919 + 12345;
    h ^= h >> 13;
    h = h.wrapping_mul(0x5bd1_e995);
    h ^= h >> 15;
    h.is_multiple_of(20)
}

/// Subject nouns `(singular, plural)` for agreement.
pub const NOUNS: &[(&str, &str)] = &[
    ("key", "keys"),
    ("dog", "dogs"),
    ("car", "cars"),
    ("book", "books"),
    ("girl", "girls"),
    ("boy", "boys"),
    ("tree", "trees"),
    ("bird", "birds"),
    ("house", "houses"),
    ("door", "doors"),
    ("lamp", "lamps"),
    ("chair", "chairs"),
    ("friend", "friends"),
    ("teacher", "teachers"),
    ("doctor", "doctors"),
    ("student", "students"),
    ("window", "windows"),
    ("flower", "flowers"),
    // held out of opposite-number distractor sentences:
    ("horse", "horses"),
    ("cup", "cups"),
    ("ship", "ships"),
    ("road", "roads"),
    ("coat", "coats"),
    ("farmer", "farmers"),
];

/// Number of [`NOUNS`] (from the end) held out of opposite-number distractor sentences.
pub const HELD_OUT_NOUNS: usize = 6;

/// Distractor nouns `(singular, plural)` (objects of the preposition).
pub const DISTRACTORS: &[(&str, &str)] = &[
    ("cabinet", "cabinets"),
    ("garden", "gardens"),
    ("river", "rivers"),
    ("school", "schools"),
    ("castle", "castles"),
    ("farm", "farms"),
    ("tower", "towers"),
    ("bridge", "bridges"),
    ("forest", "forests"),
    ("shop", "shops"),
];

const PREPS: &[&str] = &["to", "near", "behind", "beside", "under", "by"];
const ADJS: &[&str] = &[
    "old", "new", "red", "small", "big", "quiet", "open", "broken", "clean", "green",
];

const NAMES: &[&str] = &[
    "Anna", "Ben", "Carl", "Dana", "Emma", "Finn", "Grace", "Hugo", "Iris", "Jack",
];
const VERBS: &[&str] = &[
    "saw", "found", "painted", "bought", "sold", "liked", "cleaned", "moved", "carried", "lost",
];
const OBJECTS: &[&str] = &[
    "the old boat",
    "a red ball",
    "the map",
    "a blue hat",
    "the letter",
    "a small box",
    "the bike",
    "a warm coat",
    "the picture",
    "a green lamp",
];
const PLACES: &[&str] = &[
    "in the park",
    "at home",
    "near the lake",
    "after lunch",
    "in the morning",
    "at the market",
    "on the hill",
    "before dinner",
    "in the rain",
    "by the sea",
];
const WEATHER: &[&str] = &["cold", "warm", "sunny", "windy", "rainy", "dark", "bright"];
const DAYS: &[&str] = &[
    "Monday",
    "Tuesday",
    "Friday",
    "Sunday",
    "the weekend",
    "the evening",
];

/// The evaluated tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Task {
    /// City → capital through the state, on held-out cities.
    TwoHop,
    /// Two-digit addition on held-out pairs.
    Addition,
    /// Subject–verb agreement across an opposite-number distractor, held-out subject nouns.
    Agreement,
    /// Agreement across an opposite-number distractor for the trained subject nouns
    /// (prompts sampled from the training distribution: a sanity check, not held out).
    AgreementTrained,
    /// City → state (trained facts; a sanity check, not held out).
    CityState,
    /// State → capital (trained facts; a sanity check, not held out).
    StateCapital,
}

impl Task {
    /// Short name used in reports and the model card.
    pub fn name(self) -> &'static str {
        match self {
            Task::TwoHop => "two-hop (held-out cities)",
            Task::Addition => "addition (held-out pairs)",
            Task::Agreement => "agreement (held-out nouns)",
            Task::AgreementTrained => "agreement (trained nouns)",
            Task::CityState => "city->state (trained)",
            Task::StateCapital => "state->capital (trained)",
        }
    }

    /// Whether the prompts are held out of training (the bar applies only to these).
    pub fn held_out(self) -> bool {
        matches!(self, Task::TwoHop | Task::Addition | Task::Agreement)
    }
}

/// One evaluation prompt and its expected continuation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvalItem {
    /// Which task.
    pub task: Task,
    /// The prompt, without BOS (the tokenizer adds it).
    pub prompt: String,
    /// The expected continuation, e.g. `" Austin"` or `"95."`.
    pub answer: String,
}

fn city_state(rng: &mut Rng, city: &str, state: &str) -> String {
    match rng.below(3) {
        0 => format!("{city} is in {state}."),
        1 => format!("{city} is a city in {state}."),
        _ => format!("The state containing {city} is {state}."),
    }
}

fn state_capital(rng: &mut Rng, state: &str, capital: &str) -> String {
    match rng.below(2) {
        0 => format!("The capital of {state} is {capital}."),
        _ => format!("{capital} is the capital of {state}."),
    }
}

/// The two-hop sentence (training form).
pub fn two_hop_sentence(city: &str, capital: &str) -> String {
    format!("The capital of the state containing {city} is {capital}.")
}

/// Samples one training sentence of the demo corpus.
pub fn sample_sentence(rng: &mut Rng) -> String {
    let u = rng.uniform();
    if u < 0.11 {
        let (state, _, cities) = rng.pick(STATES);
        let city = *rng.pick(cities);
        city_state(rng, city, state)
    } else if u < 0.17 {
        let (state, capital, _) = rng.pick(STATES);
        state_capital(rng, state, capital)
    } else if u < 0.29 {
        // Two-hop sentences only for cities that are not held out.
        loop {
            let s = rng.below(STATES.len());
            let c = rng.below(5);
            if !two_hop_held_out(s, c) {
                return two_hop_sentence(STATES[s].2[c], STATES[s].1);
            }
        }
    } else if u < 0.35 {
        // The one-digit table ("7+8=15.") is the units digit's sub-problem on its own; without
        // it the units digit of two-digit sums stays near chance for thousands of steps.
        let a = rng.below(10);
        let b = rng.below(10);
        format!("{a}+{b}={}.", a + b)
    } else if u < 0.73 {
        loop {
            let a = 10 + rng.below(90) as u32;
            let b = 10 + rng.below(90) as u32;
            if !addition_held_out(a, b) {
                return format!("{a}+{b}={}.", a + b);
            }
        }
    } else if u < 0.84 {
        // Held-out nouns take part only with a distractor of their own number, so their
        // number is learnt where it has to be carried, never in the attraction case.
        let n = rng.below(NOUNS.len());
        let plural = rng.below(2) == 1;
        let d = rng.pick(DISTRACTORS);
        let dist_plural = if n >= NOUNS.len() - HELD_OUT_NOUNS {
            plural
        } else {
            rng.below(2) == 1
        };
        let dist = if dist_plural { d.1 } else { d.0 };
        let subj = if plural { NOUNS[n].1 } else { NOUNS[n].0 };
        let verb = if plural { "are" } else { "is" };
        format!(
            "The {subj} {} the {dist} {verb} {}.",
            rng.pick(PREPS),
            rng.pick(ADJS)
        )
    } else if u < 0.90 {
        let (sg, pl) = rng.pick(NOUNS);
        if rng.below(2) == 1 {
            format!("The {pl} are {}.", rng.pick(ADJS))
        } else {
            format!("The {sg} is {}.", rng.pick(ADJS))
        }
    } else {
        filler(rng)
    }
}

fn filler(rng: &mut Rng) -> String {
    match rng.below(3) {
        0 => format!(
            "{} {} {} {}.",
            rng.pick(NAMES),
            rng.pick(VERBS),
            rng.pick(OBJECTS),
            rng.pick(PLACES)
        ),
        1 => format!("It was {} on {}.", rng.pick(WEATHER), rng.pick(DAYS)),
        _ => format!(
            "{} and {} walked {}.",
            rng.pick(NAMES),
            rng.pick(NAMES),
            rng.pick(PLACES)
        ),
    }
}

/// `n` sentences for tokenizer training, plus every entity name in every training form once,
/// so rare names still get their merges.
pub fn tokenizer_corpus(seed: u64, n: usize) -> Vec<String> {
    let mut rng = Rng::derive(seed, "tokenizer-corpus");
    let mut out: Vec<String> = (0..n).map(|_| sample_sentence(&mut rng)).collect();
    for (state, capital, cities) in STATES {
        for city in cities {
            out.push(format!("{city} is in {state}."));
            out.push(format!("The capital of {state} is {capital}."));
        }
    }
    out
}

/// All evaluation prompts, in a fixed order.
pub fn eval_items() -> Vec<EvalItem> {
    let mut items = Vec::new();
    for (s, (state, capital, cities)) in STATES.iter().enumerate() {
        for (c, city) in cities.iter().enumerate() {
            if two_hop_held_out(s, c) {
                items.push(EvalItem {
                    task: Task::TwoHop,
                    prompt: format!("The capital of the state containing {city} is"),
                    answer: format!(" {capital}"),
                });
            }
            items.push(EvalItem {
                task: Task::CityState,
                prompt: format!("{city} is in"),
                answer: format!(" {state}"),
            });
        }
        items.push(EvalItem {
            task: Task::StateCapital,
            prompt: format!("The capital of {state} is"),
            answer: format!(" {capital}"),
        });
    }
    for a in 10..100u32 {
        for b in 10..100u32 {
            if addition_held_out(a, b) {
                items.push(EvalItem {
                    task: Task::Addition,
                    prompt: format!("{a}+{b}="),
                    answer: format!("{}.", a + b),
                });
            }
        }
    }
    for (i, (sg, pl)) in NOUNS[NOUNS.len() - HELD_OUT_NOUNS..].iter().enumerate() {
        for (j, prep) in PREPS.iter().enumerate() {
            for k in 0..2 {
                let d = DISTRACTORS[(i * 3 + j + k * 5) % DISTRACTORS.len()];
                // The distractor always has the opposite number: the hard case.
                items.push(EvalItem {
                    task: Task::Agreement,
                    prompt: format!("The {sg} {prep} the {}", d.1),
                    answer: " is".into(),
                });
                items.push(EvalItem {
                    task: Task::Agreement,
                    prompt: format!("The {pl} {prep} the {}", d.0),
                    answer: " are".into(),
                });
            }
        }
    }
    for (i, (sg, pl)) in NOUNS[..NOUNS.len() - HELD_OUT_NOUNS].iter().enumerate() {
        let prep = PREPS[i % PREPS.len()];
        let d = DISTRACTORS[i % DISTRACTORS.len()];
        items.push(EvalItem {
            task: Task::AgreementTrained,
            prompt: format!("The {sg} {prep} the {}", d.1),
            answer: " is".into(),
        });
        items.push(EvalItem {
            task: Task::AgreementTrained,
            prompt: format!("The {pl} {prep} the {}", d.0),
            answer: " are".into(),
        });
    }
    items
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentences_are_deterministic_and_never_leak_held_out_prompts() {
        let mut a = Rng::new(3);
        let mut b = Rng::new(3);
        let xs: Vec<String> = (0..20000).map(|_| sample_sentence(&mut a)).collect();
        let ys: Vec<String> = (0..20000).map(|_| sample_sentence(&mut b)).collect();
        assert_eq!(xs, ys);
        let evals = eval_items();
        for it in evals.iter().filter(|i| i.task.held_out()) {
            assert!(
                !xs.iter()
                    .any(|s| s.starts_with(&format!("{}{}", it.prompt, it.answer))),
                "held-out prompt {:?} appears in training",
                it.prompt
            );
        }
        // Held-out nouns never meet an opposite-number distractor, but do meet same-number ones.
        let mut same = 0;
        for (sg, pl) in &NOUNS[NOUNS.len() - HELD_OUT_NOUNS..] {
            for prep in PREPS {
                for (dsg, dpl) in DISTRACTORS {
                    for bad in [
                        format!("The {sg} {prep} the {dpl} "),
                        format!("The {pl} {prep} the {dsg} "),
                    ] {
                        assert!(!xs.iter().any(|s| s.starts_with(&bad)), "{bad}");
                    }
                    let good = format!("The {pl} {prep} the {dpl} ");
                    same += xs.iter().filter(|s| s.starts_with(&good)).count();
                }
            }
        }
        assert!(same > 0);
        // The held-out cities' one-hop facts are trained.
        assert!(xs.iter().any(|s| s.starts_with("Dallas is")));
        assert!(xs.iter().any(|s| s == "The capital of Texas is Austin."));
        assert!(two_hop_held_out(0, 0), "Dallas is a held-out two-hop city");
    }

    #[test]
    fn held_out_sets_have_the_documented_sizes() {
        let evals = eval_items();
        let count = |t| evals.iter().filter(|i| i.task == t).count();
        assert_eq!(count(Task::TwoHop), 2 * STATES.len());
        let add = count(Task::Addition);
        assert!((300..=520).contains(&add), "{add} held-out additions");
        assert_eq!(count(Task::Agreement), HELD_OUT_NOUNS * PREPS.len() * 4);
    }
}
