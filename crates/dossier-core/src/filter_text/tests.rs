use chrono::{DateTime, Utc};
use proptest::prelude::*;

use super::*;
use crate::filter::MAX_AGO_SECONDS;
use crate::{DataKey, ProfileField};

fn field(path: &str) -> FilterField {
    FilterField::parse(path).unwrap()
}

fn cmp(path: &str, op: CmpOp, value: DataValue) -> Filter {
    Filter::Cmp {
        field: field(path),
        op,
        value,
    }
}

fn s(v: &str) -> DataValue {
    DataValue::String(v.into())
}

fn at(t: &str) -> DateTime<Utc> {
    t.parse().unwrap()
}

fn err(text: &str) -> String {
    parse_filter(text).unwrap_err().to_string()
}

#[test]
fn reads_the_segment_example() {
    let f = parse_filter(r#"country = "FR" and data.price_plan = "basic" and agg.avg_basket > 50"#)
        .unwrap();
    assert_eq!(
        f,
        Filter::And(vec![
            cmp("country", CmpOp::Eq, s("FR")),
            cmp("data.price_plan", CmpOp::Eq, s("basic")),
            cmp("agg.avg_basket", CmpOp::Gt, DataValue::Number(50.0)),
        ])
    );
}

#[test]
fn and_binds_tighter_than_or_and_not_tightest() {
    let a = || Filter::Exists(field("email"));
    let b = || Filter::Exists(field("phone"));
    let c = || Filter::Exists(field("city"));
    assert_eq!(
        parse_filter("email exists or phone exists and city exists").unwrap(),
        Filter::Or(vec![a(), Filter::And(vec![b(), c()])])
    );
    assert_eq!(
        parse_filter("not email exists and phone exists").unwrap(),
        Filter::And(vec![Filter::Not(Box::new(a())), b()])
    );
    assert_eq!(
        parse_filter("(email exists or phone exists) and city exists").unwrap(),
        Filter::And(vec![Filter::Or(vec![a(), b()]), c()])
    );
    // Parentheses keep a nested group nested; redundant ones add nothing.
    assert_eq!(
        parse_filter("(email exists and phone exists) and city exists").unwrap(),
        Filter::And(vec![Filter::And(vec![a(), b()]), c()])
    );
    assert_eq!(parse_filter("((email exists))").unwrap(), a());
}

#[test]
fn keywords_ignore_case_and_spacing_is_free() {
    let text = "NOT email Exists\n  AND\tcountry<>\"FR\" Or phone NOT EXISTS";
    assert_eq!(
        parse_filter(text).unwrap(),
        Filter::Or(vec![
            Filter::And(vec![
                Filter::Not(Box::new(Filter::Exists(field("email")))),
                cmp("country", CmpOp::Ne, s("FR")),
            ]),
            Filter::Not(Box::new(Filter::Exists(field("phone")))),
        ])
    );
    assert_eq!(
        parse_filter("agg.n>=-3.5").unwrap(),
        cmp("agg.n", CmpOp::Gte, DataValue::Number(-3.5))
    );
}

#[test]
fn reads_every_kind_of_condition_and_value() {
    let cases: Vec<(&str, Filter)> = vec![
        (r#"email != "a@b.c""#, cmp("email", CmpOp::Ne, s("a@b.c"))),
        (
            "agg.n < 1e3",
            cmp("agg.n", CmpOp::Lt, DataValue::Number(1000.0)),
        ),
        (
            "data.vip = true",
            cmp("data.vip", CmpOp::Eq, DataValue::Bool(true)),
        ),
        (
            "data.vip <= FALSE",
            cmp("data.vip", CmpOp::Lte, DataValue::Bool(false)),
        ),
        (
            r#"data.note = "say \"hi\"\n\\ bye""#,
            cmp("data.note", CmpOp::Eq, s("say \"hi\"\n\\ bye")),
        ),
        (
            r#"country in ["FR", "DE"]"#,
            Filter::In {
                field: field("country"),
                values: vec![s("FR"), s("DE")],
            },
        ),
        (
            r#"company contains "acme""#,
            Filter::Contains {
                field: field("company"),
                text: "acme".into(),
            },
        ),
        (
            "agg.last_order_at < ago(30d)",
            Filter::Ago {
                field: field("agg.last_order_at"),
                op: CmpOp::Lt,
                seconds: 30 * 86_400,
            },
        ),
        (
            "updated_at >= ago(2w)",
            Filter::Ago {
                field: field("updated_at"),
                op: CmpOp::Gte,
                seconds: 14 * 86_400,
            },
        ),
        (
            r#"created_at > "2024-03-01T12:30:00+02:00""#,
            cmp(
                "created_at",
                CmpOp::Gt,
                DataValue::DateTime(at("2024-03-01T10:30:00Z")),
            ),
        ),
        (
            r#"created_at in ["2024-03-01T10:30:00Z"]"#,
            Filter::In {
                field: field("created_at"),
                values: vec![DataValue::DateTime(at("2024-03-01T10:30:00Z"))],
            },
        ),
        (
            r#"data.paid_at >= datetime("2024-01-01T00:00:00Z")"#,
            cmp(
                "data.paid_at",
                CmpOp::Gte,
                DataValue::DateTime(at("2024-01-01T00:00:00Z")),
            ),
        ),
        // A date-like string elsewhere stays a string.
        (
            r#"data.note = "2024-01-01T00:00:00Z""#,
            cmp("data.note", CmpOp::Eq, s("2024-01-01T00:00:00Z")),
        ),
    ];
    for (text, want) in cases {
        assert_eq!(parse_filter(text).unwrap(), want, "{text}");
    }
}

#[test]
fn writes_canonical_text() {
    let canon = |text: &str| format_filter(&parse_filter(text).unwrap());
    insta::assert_snapshot!(canon(r#"country="FR" AND (data.plan<>"basic" OR agg.n>=1e3)"#), @r#"country = "FR" and (data.plan != "basic" or agg.n >= 1000)"#);
    insta::assert_snapshot!(canon("not (email exists and phone exists) or not city not exists"), @"not (email exists and phone exists) or not city not exists");
    insta::assert_snapshot!(canon("agg.last_order_at < ago(86400s) and updated_at > ago(90m)"), @"agg.last_order_at < ago(1d) and updated_at > ago(90m)");
    insta::assert_snapshot!(canon(r#"created_at > "2024-03-01 10:30" and data.at < datetime("2024-03-01T10:30:00.25+01:00")"#), @r#"created_at > "2024-03-01T10:30:00Z" and data.at < datetime("2024-03-01T09:30:00.250Z")"#);
    insta::assert_snapshot!(canon(r#"data.n in [1.50, -0.000001, 12345678901234567890, true, "a\"b"]"#), @r#"data.n in [1.5, -0.000001, 1.2345678901234567e19, true, "a\"b"]"#);
    insta::assert_snapshot!(canon("(email exists and phone exists) and (city exists or locale exists)"), @"(email exists and phone exists) and (city exists or locale exists)");
}

#[test]
fn resolved_filters_still_have_a_text_form() {
    let f = parse_filter("agg.last_order_at < ago(30d)").unwrap();
    let resolved = f.resolve(at("2024-05-31T12:00:00Z"));
    let text = format_filter(&resolved);
    assert_eq!(
        text,
        r#"agg.last_order_at < datetime("2024-05-01T12:00:00Z")"#
    );
    assert_eq!(parse_filter(&text).unwrap(), resolved);
}

#[test]
fn refusals_say_what_and_where() {
    insta::assert_snapshot!(err(""), @r#"syntax error at line 1, column 1: empty filter; write a condition such as country = "FR""#);
    insta::assert_snapshot!(err("  \n "), @r#"syntax error at line 2, column 2: empty filter; write a condition such as country = "FR""#);
    insta::assert_snapshot!(err("country = "), @r#"syntax error at line 1, column 11: expected a value after "=", found end of input; a value is a quoted string, a number, true or false"#);
    insta::assert_snapshot!(err(r#"country = "FR"#), @r#"syntax error at line 1, column 11: unterminated string; close it with " on the same line"#);
    insta::assert_snapshot!(err(r#"country = "FR" "DE""#), @r#"syntax error at line 1, column 16: expected and, or or the end of the filter, found the string "DE""#);
    insta::assert_snapshot!(err(r#"(country = "FR""#), @r#"syntax error at line 1, column 16: expected ")" to close the "(" at line 1, column 1, found end of input"#);
    insta::assert_snapshot!(err(r#"country = "FR")"#), @r#"syntax error at line 1, column 15: unmatched ")""#);
    insta::assert_snapshot!(err(r#"country = "FR" # note"#), @"syntax error at line 1, column 16: unexpected character '#'");
    insta::assert_snapshot!(err("country = 'FR'"), @r#"syntax error at line 1, column 11: strings take double quotes: "text", not 'text'"#);
    insta::assert_snapshot!(err("country = FR"), @r#"syntax error at line 1, column 11: expected a value after "=", found "FR"; quote text, as in "FR""#);
    insta::assert_snapshot!(err("country = and"), @r#"syntax error at line 1, column 11: expected a value after "=", found the keyword "and"; quote it to mean the text "and""#);
    insta::assert_snapshot!(err("colour = \"red\""), @r#"syntax error at line 1, column 1: unknown profile field "colour", expected one of: email, phone, first_name, last_name, company, country, city, locale, created_at, updated_at, data.<key> or agg.<name>"#);
    insta::assert_snapshot!(err("country = \"FR\" and\n  data.Plan exists"), @r#"syntax error at line 2, column 3: invalid data key "Plan": character 'P' is not allowed (use lowercase a-z, 0-9, '_' or '-')"#);
    insta::assert_snapshot!(err("country \"FR\""), @r#"syntax error at line 1, column 9: expected an operator after country (=, !=, <>, >, >=, <, <=, in, contains, exists or not exists), found the string "FR""#);
    insta::assert_snapshot!(err("and = 1"), @r#"syntax error at line 1, column 1: expected a condition such as country = "FR", found the keyword "and""#);
    insta::assert_snapshot!(err("country not = \"FR\""), @r#"syntax error at line 1, column 13: expected "exists" after "country not", found "="; to negate a comparison write not country ..."#);
    insta::assert_snapshot!(err("country in \"FR\""), @r#"syntax error at line 1, column 12: expected "[" after "in", as in country in ["FR", "DE"], found the string "FR""#);
    insta::assert_snapshot!(err("country in []"), @"syntax error at line 1, column 13: empty list; give at least one value");
    insta::assert_snapshot!(err(r#"country in ["FR" "DE"]"#), @r#"syntax error at line 1, column 18: expected "," or "]" in the list opened at line 1, column 12, found the string "DE""#);
    insta::assert_snapshot!(err("company contains 5"), @r#"syntax error at line 1, column 18: expected a quoted string after "contains", found the number 5"#);
    insta::assert_snapshot!(err(r#"data.note = "a\tb""#), @r#"syntax error at line 1, column 15: unknown escape "\t" in a string; use \", \\ or \n"#);
    insta::assert_snapshot!(err("agg.n > 30d"), @r#"syntax error at line 1, column 9: unexpected "d" after the number 30; relative dates are written ago(30d)"#);
    insta::assert_snapshot!(err("agg.n > 1e999"), @"syntax error at line 1, column 9: number 1e999 is out of range");
    insta::assert_snapshot!(err("agg.at < ago 30d"), @r#"syntax error at line 1, column 14: expected "(" after ago, as in ago(30d), found the number 30d"#);
    insta::assert_snapshot!(err("agg.at < ago(30)"), @"syntax error at line 1, column 14: ago(30) needs a unit, one of s, m, h, d or w, as in ago(30d)");
    insta::assert_snapshot!(err("agg.at < ago(3y)"), @r#"syntax error at line 1, column 14: unknown unit "y" in ago(...); use s, m, h, d or w"#);
    insta::assert_snapshot!(err("agg.at < ago(1.5d)"), @"syntax error at line 1, column 14: ago(...) takes a whole number, as in ago(30d), not 1.5");
    insta::assert_snapshot!(err("agg.at < ago(1000000w)"), @"syntax error at line 1, column 14: ago(...) spans at most 31536000000 seconds (1000 years)");
    insta::assert_snapshot!(err("agg.at < ago(30d"), @r#"syntax error at line 1, column 17: expected ")" to close the ago( at line 1, column 10, found end of input"#);
    insta::assert_snapshot!(err("agg.at in [ago(3d)]"), @"syntax error at line 1, column 12: ago(...) only follows a comparison (=, !=, >, >=, <, <=), not in or contains");
    insta::assert_snapshot!(err("country < ago(3d)"), @"syntax error at line 1, column 11: country holds text and does not compare with date-times");
    insta::assert_snapshot!(err(r#"created_at > "yesterday""#), @r#"syntax error at line 1, column 14: invalid value for "created_at": "yesterday" is not an RFC 3339 date-time such as "2024-03-01T10:30:00Z""#);
    insta::assert_snapshot!(err("created_at > 5"), @r#"syntax error at line 1, column 14: invalid value for "created_at": 5 is not an RFC 3339 date-time such as "2024-03-01T10:30:00Z""#);
    insta::assert_snapshot!(err(r#"data.at > datetime("soon")"#), @r#"syntax error at line 1, column 20: "soon" is not an RFC 3339 date-time such as "2024-03-01T10:30:00Z""#);
    insta::assert_snapshot!(err("()"), @r#"syntax error at line 1, column 2: expected a condition after "(", found ")""#);
    // Columns count characters, not bytes.
    insta::assert_snapshot!(err("data.note = \"é\" ?"), @"syntax error at line 1, column 17: unexpected character '?'");
}

#[test]
fn bounds_hold_before_and_after_reading() {
    let long = format!("data.note = \"{}\"", "é".repeat(MAX_FILTER_TEXT_BYTES));
    insta::assert_snapshot!(err(&long), @"syntax error at line 1, column 4103: filter is 16398 bytes long, the maximum is 8192");
    let deep = format!("{}email exists{}", "(".repeat(40), ")".repeat(40));
    insta::assert_snapshot!(err(&deep), @r#"syntax error at line 1, column 33: nested deeper than 32 levels of parentheses and "not""#);
    let nots = format!("{}email exists", "not ".repeat(10));
    insta::assert_snapshot!(err(&nots), @"invalid filter at where: nested deeper than 8 levels");
    let wide = vec!["email exists"; 65].join(" or ");
    insta::assert_snapshot!(err(&wide), @"invalid filter at where: more than 64 conditions");
    // Redundant parentheses are fine within the reader's own limit.
    let padded = format!("{}email exists{}", "(".repeat(30), ")".repeat(30));
    assert_eq!(
        parse_filter(&padded).unwrap(),
        Filter::Exists(field("email"))
    );
}

fn any_field() -> impl Strategy<Value = FilterField> {
    prop_oneof![
        prop::sample::select(ProfileField::ALL.to_vec()).prop_map(FilterField::Profile),
        Just(FilterField::CreatedAt),
        Just(FilterField::UpdatedAt),
        "[a-z0-9_-]{1,12}".prop_map(|k| FilterField::Data(DataKey::new(k).unwrap())),
        "[a-z0-9_-]{1,12}".prop_map(|k| FilterField::Agg(DataKey::new(k).unwrap())),
    ]
}

fn any_op() -> impl Strategy<Value = CmpOp> {
    prop::sample::select(vec![
        CmpOp::Eq,
        CmpOp::Ne,
        CmpOp::Gt,
        CmpOp::Gte,
        CmpOp::Lt,
        CmpOp::Lte,
    ])
}

fn any_datetime() -> impl Strategy<Value = DataValue> {
    // Years 0001 to 9999, with any sub-second part.
    (-62_135_596_800i64..253_402_300_799, 0u32..1_000_000_000)
        .prop_map(|(s, ns)| DataValue::DateTime(DateTime::from_timestamp(s, ns).unwrap()))
}

fn any_value(field: &FilterField) -> BoxedStrategy<DataValue> {
    let scalar = prop_oneof![
        ".{0,12}".prop_map(DataValue::String),
        any::<String>().prop_map(DataValue::String),
        (-1000i64..1000).prop_map(|n| DataValue::Number(n as f64)),
        any::<f64>()
            .prop_filter("finite", |n| n.is_finite())
            .prop_map(DataValue::Number),
        any::<bool>().prop_map(DataValue::Bool),
    ];
    match field {
        FilterField::CreatedAt | FilterField::UpdatedAt => any_datetime().boxed(),
        FilterField::Profile(_) => scalar.boxed(),
        _ => prop_oneof![scalar, any_datetime()].boxed(),
    }
}

fn any_leaf() -> impl Strategy<Value = Filter> {
    let by_field = any_field().prop_flat_map(|f| {
        let (f1, f2, f3) = (f.clone(), f.clone(), f.clone());
        prop_oneof![
            (any_op(), any_value(&f)).prop_map(move |(op, value)| Filter::Cmp {
                field: f1.clone(),
                op,
                value
            }),
            prop::collection::vec(any_value(&f), 1..4).prop_map(move |values| Filter::In {
                field: f2.clone(),
                values
            }),
            any::<String>().prop_map(move |text| Filter::Contains {
                field: f3.clone(),
                text
            }),
            Just(Filter::Exists(f)),
        ]
    });
    let ago = (
        any_field().prop_filter("not a profile field", |f| {
            !matches!(f, FilterField::Profile(_))
        }),
        any_op(),
        prop_oneof![
            -MAX_AGO_SECONDS..=MAX_AGO_SECONDS,
            (0i64..100).prop_map(|n| n * 86_400),
        ],
    )
        .prop_map(|(field, op, seconds)| Filter::Ago { field, op, seconds });
    prop_oneof![4 => by_field, 1 => ago]
}

fn any_filter() -> impl Strategy<Value = Filter> {
    any_leaf().prop_recursive(4, 48, 3, |inner| {
        prop_oneof![
            inner.clone().prop_map(|f| Filter::Not(Box::new(f))),
            prop::collection::vec(inner.clone(), 2..4).prop_map(Filter::And),
            prop::collection::vec(inner, 2..4).prop_map(Filter::Or),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn canonical_text_reads_back_to_the_same_filter(f in any_filter()) {
        prop_assume!(f.check_bounds().is_ok());
        let text = format_filter(&f);
        let back = parse_filter(&text);
        prop_assert_eq!(back.as_ref(), Ok(&f), "{}", text);
        prop_assert_eq!(format_filter(&back.unwrap()), text);
    }

    #[test]
    fn any_text_reads_or_refuses_without_panicking(text in any::<String>()) {
        if let Ok(f) = parse_filter(&text) {
            prop_assert_eq!(parse_filter(&format_filter(&f)), Ok(f));
        }
    }

    #[test]
    fn token_soup_reads_or_refuses_without_panicking(
        words in prop::collection::vec(prop::sample::select(vec![
            "country", "data.x", "agg.y", "created_at", "and", "or", "not", "in",
            "contains", "exists", "(", ")", "[", "]", ",", "=", "!=", "<", ">=",
            "\"FR\"", "\"2024-03-01T10:30:00Z\"", "5", "-1.5e3", "true", "ago", "ago(3d)",
            "datetime(\"2024-03-01\")", "\"", "30d", "\n",
        ]), 0..16)
    ) {
        let text = words.join(" ");
        if let Ok(f) = parse_filter(&text) {
            prop_assert_eq!(parse_filter(&format_filter(&f)), Ok(f));
        }
    }
}
