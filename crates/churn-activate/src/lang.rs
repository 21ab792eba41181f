//! Labels for people: segment, lifecycle and tier names in English or Chinese. Outputs carry
//! both a stable code (what rules and BI filters use, the same in every language) and the
//! label of the chosen language (what a marketer reads in a CRM).

use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::ActivateError;

/// The language of the labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Lang {
    #[default]
    #[serde(rename = "en")]
    En,
    #[serde(rename = "zh-CN")]
    ZhCn,
}

impl FromStr for Lang {
    type Err = ActivateError;

    fn from_str(s: &str) -> Result<Lang, ActivateError> {
        match s {
            "en" => Ok(Lang::En),
            "zh-CN" | "zh" => Ok(Lang::ZhCn),
            other => Err(ActivateError::UnknownLanguage(other.to_string())),
        }
    }
}

impl Lang {
    pub fn code(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::ZhCn => "zh-CN",
        }
    }
}

/// A code and its labels.
struct Labelled {
    code: &'static str,
    en: &'static str,
    zh: &'static str,
}

const RFM_SEGMENTS: &[Labelled] = &[
    Labelled {
        code: "champions",
        en: "Champions",
        zh: "重要价值客户",
    },
    Labelled {
        code: "loyal",
        en: "Loyal",
        zh: "忠诚客户",
    },
    Labelled {
        code: "potential_loyalist",
        en: "Potential loyalist",
        zh: "潜力客户",
    },
    Labelled {
        code: "new",
        en: "New",
        zh: "新客户",
    },
    Labelled {
        code: "promising",
        en: "Promising",
        zh: "有潜力新客",
    },
    Labelled {
        code: "need_attention",
        en: "Need attention",
        zh: "需要关注客户",
    },
    Labelled {
        code: "about_to_sleep",
        en: "About to sleep",
        zh: "即将沉睡客户",
    },
    Labelled {
        code: "at_risk",
        en: "At risk",
        zh: "流失风险客户",
    },
    Labelled {
        code: "cant_lose_them",
        en: "Can't lose them",
        zh: "重要挽留客户",
    },
    Labelled {
        code: "hibernating",
        en: "Hibernating",
        zh: "休眠客户",
    },
    Labelled {
        code: "lost",
        en: "Lost",
        zh: "已流失客户",
    },
];

const LIFECYCLE_STAGES: &[Labelled] = &[
    Labelled {
        code: "new",
        en: "New",
        zh: "新客户",
    },
    Labelled {
        code: "active",
        en: "Active",
        zh: "活跃客户",
    },
    Labelled {
        code: "at_risk",
        en: "At risk",
        zh: "流失预警",
    },
    Labelled {
        code: "dormant",
        en: "Dormant",
        zh: "沉睡客户",
    },
    Labelled {
        code: "lost",
        en: "Lost",
        zh: "已流失",
    },
    Labelled {
        code: "reactivated",
        en: "Reactivated",
        zh: "回流客户",
    },
];

fn label(table: &[Labelled], code: &str, lang: Lang) -> &'static str {
    let entry = table
        .iter()
        .find(|l| l.code == code)
        .unwrap_or_else(|| panic!("no label for code {code:?}: the code tables are out of step"));
    match lang {
        Lang::En => entry.en,
        Lang::ZhCn => entry.zh,
    }
}

/// The label of an RFM segment code.
pub fn rfm_segment_label(code: &str, lang: Lang) -> &'static str {
    label(RFM_SEGMENTS, code, lang)
}

/// The label of a lifecycle stage code.
pub fn lifecycle_label(code: &str, lang: Lang) -> &'static str {
    label(LIFECYCLE_STAGES, code, lang)
}

/// Every lifecycle stage code.
pub const LIFECYCLE_CODES: &[&str] =
    &["new", "active", "at_risk", "dormant", "lost", "reactivated"];

/// Every RFM segment code, in the README's order.
pub fn rfm_segment_codes() -> impl Iterator<Item = &'static str> {
    RFM_SEGMENTS.iter().map(|l| l.code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn there_are_eleven_segments_and_six_stages_each_with_distinct_labels() {
        assert_eq!(RFM_SEGMENTS.len(), 11);
        assert_eq!(LIFECYCLE_STAGES.len(), 6);
        let codes: Vec<&str> = LIFECYCLE_STAGES.iter().map(|l| l.code).collect();
        let mut sorted = codes.clone();
        sorted.sort();
        let mut expected = LIFECYCLE_CODES.to_vec();
        expected.sort();
        assert_eq!(sorted, expected);
        for table in [RFM_SEGMENTS, LIFECYCLE_STAGES] {
            let mut zh: Vec<&str> = table.iter().map(|l| l.zh).collect();
            zh.sort();
            zh.dedup();
            assert_eq!(zh.len(), table.len());
        }
    }

    #[test]
    fn languages_parse_from_their_codes() {
        assert_eq!("zh-CN".parse::<Lang>().unwrap(), Lang::ZhCn);
        assert_eq!("en".parse::<Lang>().unwrap(), Lang::En);
        assert!("fr".parse::<Lang>().is_err());
        assert_eq!(lifecycle_label("at_risk", Lang::ZhCn), "流失预警");
        assert_eq!(rfm_segment_label("champions", Lang::ZhCn), "重要价值客户");
    }
}
