//! Word lists and small generators of realistic-looking field values.

use super::rng::Rng;

pub const FIRST_NAMES: &[&str] = &[
    "Anna", "Ben", "Carla", "David", "Elif", "Farid", "Greta", "Hugo", "Ines", "Jonas", "Kemal", "Lena", "Marco",
    "Nina", "Oskar", "Paula", "Quentin", "Rosa", "Sven", "Tara", "Umut", "Vera", "Wim", "Xenia", "Yusuf", "Zoe",
    "Amir", "Bea", "Chen", "Dana", "Emil", "Fatima",
];

pub const LAST_NAMES: &[&str] = &[
    "Meyer", "Schmidt", "Novak", "Rossi", "Garcia", "Kowalski", "Dubois", "Jensen", "Silva", "Yilmaz", "Nguyen",
    "Okafor", "Haddad", "Larsen", "Moreau", "Fischer", "Costa", "Horvat", "Ivanova", "Berg", "Kaya", "Lopez", "Martin",
    "Weber", "Wagner", "Becker", "Hoffmann",
];

pub const DOMAINS: &[&str] = &[
    "example.com",
    "mail.test",
    "corp.example",
    "inbox.example.org",
    "post.test",
];

pub const CITIES: &[&str] = &[
    "Berlin", "Hamburg", "Munich", "Vienna", "Zurich", "Lyon", "Milan", "Porto", "Krakow", "Ghent", "Aarhus", "Graz",
    "Basel", "Turin", "Leeds", "Dublin",
];

pub const COUNTRIES: &[&str] = &["DE", "AT", "CH", "FR", "IT", "PT", "PL", "BE", "DK", "GB", "IE", "NL"];

pub const STATUSES: &[&str] = &[
    "PENDING",
    "PAID",
    "PACKED",
    "SHIPPED",
    "DELIVERED",
    "RETURNED",
    "CANCELLED",
];

pub const EVENT_TYPES: &[&str] = &[
    "page_view",
    "add_to_cart",
    "remove_from_cart",
    "checkout_start",
    "payment_ok",
    "payment_failed",
    "login",
    "logout",
    "search",
    "review_posted",
];

pub const WORDS: &[&str] = &[
    "the",
    "order",
    "was",
    "delivered",
    "to",
    "customer",
    "and",
    "payment",
    "confirmed",
    "by",
    "bank",
    "transfer",
    "after",
    "two",
    "days",
    "package",
    "box",
    "damaged",
    "replacement",
    "requested",
    "please",
    "call",
    "before",
    "noon",
    "leave",
    "at",
    "door",
    "gift",
    "wrap",
    "invoice",
    "address",
    "changed",
    "express",
    "standard",
    "shipping",
    "warehouse",
    "north",
    "south",
    "east",
    "west",
    "size",
    "colour",
    "blue",
    "red",
    "green",
    "black",
    "white",
    "large",
    "small",
    "medium",
    "refund",
    "partial",
    "full",
    "voucher",
    "applied",
    "discount",
    "loyalty",
    "points",
    "member",
    "since",
    "return",
    "label",
    "printed",
    "courier",
    "tracking",
    "number",
    "estimated",
    "arrival",
    "tomorrow",
    "week",
    "weekend",
    "office",
    "closed",
    "holiday",
];

pub const USER_AGENTS: &[&str] = &[
    "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15",
    "okhttp/4.12.0",
    "shop-app/5.3.1 (Android 14; Pixel 8)",
];

const HEX: &[u8; 16] = b"0123456789abcdef";
const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// `n` random lower-case hex digits.
pub fn push_hex(rng: &mut Rng, out: &mut String, n: usize) {
    let mut v = 0_u64;
    for i in 0..n {
        if i % 16 == 0 {
            v = rng.next_u64();
        }
        out.push(HEX[(v & 0xF) as usize] as char);
        v >>= 4;
    }
}

/// `n` random base64 characters (opaque tokens).
pub fn push_b64(rng: &mut Rng, out: &mut String, n: usize) {
    let mut v = 0_u64;
    for i in 0..n {
        if i % 10 == 0 {
            v = rng.next_u64();
        }
        out.push(B64[(v & 0x3F) as usize] as char);
        v >>= 6;
    }
}

/// A random UUID-formatted string.
pub fn uuid(rng: &mut Rng) -> String {
    let mut s = String::with_capacity(36);
    push_hex(rng, &mut s, 8);
    s.push('-');
    push_hex(rng, &mut s, 4);
    s.push_str("-4");
    push_hex(rng, &mut s, 3);
    s.push('-');
    s.push(['8', '9', 'a', 'b'][rng.index(4)]);
    push_hex(rng, &mut s, 3);
    s.push('-');
    push_hex(rng, &mut s, 12);
    s
}

/// A sentence of `lo..=hi` words from the vocabulary.
pub fn push_words(rng: &mut Rng, out: &mut String, lo: u64, hi: u64) {
    let n = rng.range(lo, hi);
    for i in 0..n {
        if i > 0 {
            out.push(' ');
        }
        out.push_str(rng.pick(WORDS));
    }
}

pub fn email(rng: &mut Rng, first: &str, last: &str) -> String {
    format!(
        "{}.{}{}@{}",
        first.to_ascii_lowercase(),
        last.to_ascii_lowercase(),
        rng.below(1000),
        rng.pick(DOMAINS)
    )
}

pub fn ipv4(rng: &mut Rng) -> String {
    format!("10.{}.{}.{}", rng.below(256), rng.below(256), 1 + rng.below(254))
}

/// A price in cents, skewed towards small amounts.
pub fn cents(rng: &mut Rng) -> u64 {
    let base = [499, 999, 1499, 1999, 2999, 4999, 9999, 19999][rng.index(8)];
    base + rng.below(base / 2)
}

pub fn money(cents: u64) -> String {
    format!("{}.{:02}", cents / 100, cents % 100)
}
