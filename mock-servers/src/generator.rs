//! Deterministic generator of realistic Changsha petitions and 12345 work orders.
//!
//! Every record is a pure function of `(seed, index, version)`: nothing is kept in memory, so a
//! mock can serve a backlog of millions of records, and two runs with the same seed serve the
//! same bytes. Records are valid against the embedded code tables (the crate's tests validate
//! thousands): identity numbers carry a correct GB 11643 check character and a real Changsha
//! address code, mobiles are well formed, and divisions, forms, purposes and content classes
//! follow a realistic spread (every active third-level content class occurs).
//!
//! Versions are the stages of the case: a petition is registered (v1), accepted and sent to
//! a responsible unit (v2), replied (v3), concluded (v4) and evaluated (v5); one in twelve is
//! not accepted at v2 and ends there. A work order is registered (v1), dispatched (v2), handled
//! (v3), completed (v4) and followed up (v5). Each stage adds its process event.

use chrono::{DateTime, Duration, FixedOffset, NaiveDate, TimeZone};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use xfhub_schemas::validate::id_check_char;
use xfhub_schemas::{
    Acceptance, Appeal, CodeTables, Complainant, Evaluation, Flags, FollowUp, Handling,
    LevelReached, OrderReturn, Petition, ProcessEvent, ProcessEventKind, SourceRef, Unit,
    WorkOrder,
};

/// Highest version (stage) of a petition and of a work order.
pub const MAX_VERSION: u32 = 5;

/// (current code, name, weight %, streets)
const DIVISIONS: [(&str, &str, u32, [&str; 4]); 9] = [
    (
        "430102",
        "芙蓉区",
        12,
        ["五一大道", "芙蓉中路", "解放西路", "八一路"],
    ),
    (
        "430103",
        "天心区",
        10,
        ["劳动西路", "书院路", "坡子街", "湘府中路"],
    ),
    (
        "430104",
        "岳麓区",
        14,
        ["麓山南路", "桐梓坡路", "枫林三路", "岳麓大道"],
    ),
    (
        "430105",
        "开福区",
        11,
        ["湘江中路", "三一大道", "福元西路", "芙蓉北路"],
    ),
    (
        "430111",
        "雨花区",
        15,
        ["韶山中路", "劳动东路", "万家丽中路", "香樟路"],
    ),
    (
        "430112",
        "望城区",
        8,
        ["雷锋大道", "郭亮路", "金星北路", "旺旺路"],
    ),
    (
        "430121",
        "长沙县",
        12,
        ["开元东路", "星沙大道", "东八线", "漓湘路"],
    ),
    (
        "430181",
        "浏阳市",
        10,
        ["金沙路", "白沙路", "劳动路", "人民路"],
    ),
    (
        "430182",
        "宁乡市",
        8,
        ["花明路", "玉潭南路", "金洲大道", "一环路"],
    ),
];
const COMMUNITIES: [&str; 12] = [
    "新开铺社区",
    "东塘社区",
    "桃花岭社区",
    "砂子塘社区",
    "清水塘社区",
    "望月湖社区",
    "金盆岭社区",
    "马王堆社区",
    "德政园社区",
    "左家塘社区",
    "侯家塘社区",
    "雅塘村",
];
const SURNAMES: [&str; 40] = [
    "王", "李", "张", "刘", "陈", "杨", "黄", "赵", "周", "吴", "徐", "孙", "胡", "朱", "高", "林",
    "何", "郭", "马", "罗", "梁", "宋", "郑", "谢", "韩", "唐", "冯", "于", "董", "萧", "程", "曹",
    "袁", "邓", "许", "傅", "沈", "曾", "彭", "吕",
];
const GIVEN: [&str; 48] = [
    "建国", "秀英", "志强", "丽华", "伟", "芳", "军", "敏", "海燕", "国平", "红梅", "晓东", "桂兰",
    "卫东", "静", "勇", "湘平", "德明", "春花", "建华", "玉兰", "志刚", "小红", "文斌", "淑珍",
    "子轩", "梓涵", "浩然", "雨欣", "明", "佳怡", "俊杰", "桂英", "长生", "金凤", "正清", "冬梅",
    "立新", "振华", "爱民", "凤英", "家豪", "思远", "湘云", "光辉", "永红", "新民", "秋菊",
];
const MOBILE_PREFIXES: [&str; 20] = [
    "138", "139", "137", "136", "150", "151", "152", "158", "159", "182", "186", "187", "188",
    "135", "133", "153", "180", "189", "177", "199",
];
/// (purpose code, weight %)
const PURPOSES: [(&str, u32); 5] = [("01", 15), ("02", 50), ("03", 15), ("04", 15), ("99", 5)];
/// (form code, weight %)
const FORMS: [(&str, u32); 4] = [("0001", 20), ("0002", 15), ("0003", 30), ("0004", 35)];
const UNITS: [&str; 10] = [
    "人力资源和社会保障局",
    "住房和城乡建设局",
    "生态环境分局",
    "城市管理和综合执法局",
    "民政局",
    "自然资源和规划分局",
    "市场监督管理局",
    "教育局",
    "卫生健康局",
    "公安分局",
];
const DEMANDS: [&str; 6] = [
    "请求有关部门依法调查处理并书面答复。",
    "请求有关部门督促相关单位尽快解决。",
    "希望政府部门重视此事，依法维护其合法权益。",
    "建议有关部门加强监管，杜绝此类问题再次发生。",
    "请求上级部门督办，限期解决。",
    "恳请有关部门核实情况，给予公正处理。",
];
const EVAL_REASONS: [&str; 5] = [
    "问题未解决",
    "办理时间过长",
    "答复内容不清楚",
    "工作人员态度不好",
    "未与本人联系",
];
const CHANNELS: [(&str, u32); 5] = [
    ("电话", 60),
    ("网站", 10),
    ("微信", 12),
    ("湘易办", 13),
    ("短信", 5),
];
const ORDER_TYPES: [(&str, u32); 4] = [
    ("complaint", 45),
    ("help", 30),
    ("consultation", 15),
    ("suggestion", 10),
];

fn china() -> FixedOffset {
    FixedOffset::east_opt(8 * 3600).expect("+08:00 is a valid offset")
}

fn pick<'a, T>(rng: &mut StdRng, items: &'a [(T, u32)]) -> &'a T {
    let total: u32 = items.iter().map(|(_, w)| w).sum();
    let mut n = rng.gen_range(0..total);
    for (item, w) in items {
        if n < *w {
            return item;
        }
        n -= w;
    }
    &items[items.len() - 1].0
}

/// A petition as the generator knows it: the canonical record and its process events.
#[derive(Debug, Clone, PartialEq)]
pub struct GenPetition {
    pub petition: Petition,
    pub events: Vec<ProcessEvent>,
}

/// The generator: deterministic in `(seed, index, version)`.
#[derive(Debug, Clone)]
pub struct Generator {
    seed: u64,
    /// Active third-level content classes: (code, name, first-level name).
    classes: Vec<(String, String, String)>,
    /// The time of record 0; record `i` is registered after it.
    epoch: DateTime<FixedOffset>,
}

impl Generator {
    pub fn new(seed: u64) -> Generator {
        let tables = CodeTables::embedded();
        let table = tables
            .table("content_classes")
            .expect("the content class table is embedded");
        let name_of = |code: &str| {
            table
                .get(code)
                .map(|e| e.name_zh.clone())
                .unwrap_or_default()
        };
        let classes = table
            .entries
            .iter()
            .filter(|e| e.active && !e.code.ends_with("00"))
            .map(|e| {
                let first = format!("{}0000", &e.code[..2]);
                (e.code.clone(), e.name_zh.clone(), name_of(&first))
            })
            .collect();
        let epoch = china()
            .from_local_datetime(
                &NaiveDate::from_ymd_opt(2024, 1, 2)
                    .expect("valid date")
                    .and_hms_opt(8, 0, 0)
                    .expect("valid time"),
            )
            .single()
            .expect("fixed offset");
        Generator {
            seed,
            classes,
            epoch,
        }
    }

    pub fn seed(&self) -> u64 {
        self.seed
    }

    fn rng(&self, kind: u64, index: u64) -> StdRng {
        // SplitMix64-style mixing so that neighbouring indexes get unrelated streams.
        let mut z = self
            .seed
            .wrapping_add(kind.wrapping_mul(0x9E37_79B9_7F4A_7C15))
            .wrapping_add(index.wrapping_mul(0xBF58_476D_1CE4_E5B9));
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        StdRng::seed_from_u64(z ^ (z >> 31))
    }

    /// Registration time of record `index`: about 300 records a day from the epoch, in
    /// office hours, so that a backlog of a day holds about 300 records per partner.
    fn registered_at(&self, rng: &mut StdRng, index: u64) -> DateTime<FixedOffset> {
        let day = (index / 300) as i64 % 700;
        self.epoch
            + Duration::days(day)
            + Duration::minutes(rng.gen_range(0..600))
            + Duration::seconds(rng.gen_range(0..60))
    }

    fn person(&self, rng: &mut StdRng) -> String {
        let s = SURNAMES[rng.gen_range(0..SURNAMES.len())];
        let g = GIVEN[rng.gen_range(0..GIVEN.len())];
        format!("{s}{g}")
    }

    /// A valid 18-digit resident identity number born in Changsha.
    pub fn id_number(rng: &mut StdRng) -> String {
        let (division, ..) = DIVISIONS[rng.gen_range(0..DIVISIONS.len())];
        let birth = NaiveDate::from_ymd_opt(1945, 1, 1).expect("valid date")
            + Duration::days(rng.gen_range(0..20_000));
        let seq = rng.gen_range(0..1000);
        let first17 = format!("{division}{}{seq:03}", birth.format("%Y%m%d"));
        let check = char::from(id_check_char(&first17));
        format!("{first17}{check}")
    }

    pub fn mobile(rng: &mut StdRng) -> String {
        let prefix = MOBILE_PREFIXES[rng.gen_range(0..MOBILE_PREFIXES.len())];
        format!("{prefix}{:08}", rng.gen_range(0..100_000_000u32))
    }

    fn division(rng: &mut StdRng) -> usize {
        let weights: Vec<(usize, u32)> = DIVISIONS
            .iter()
            .enumerate()
            .map(|(i, d)| (i, d.2))
            .collect();
        *pick(rng, &weights)
    }

    /// Source id of petition `index` (信访件编号).
    pub fn petition_id(index: u64) -> String {
        format!("XF4301002024{index:08}")
    }

    /// Source id of work order `index` (工单编号).
    pub fn order_no(index: u64) -> String {
        format!("GD2024{index:010}")
    }

    /// The highest version petition `index` reaches (2 when it is not accepted).
    pub fn petition_max_version(&self, index: u64) -> u32 {
        if self.rng(3, index).gen_range(0..12) == 0 {
            2
        } else {
            MAX_VERSION
        }
    }

    /// The version petition `index` has when it first appears in the feed.
    pub fn initial_version(&self, index: u64) -> u32 {
        let max = self.petition_max_version(index);
        1 + self.rng(4, index).gen_range(0..max.min(3))
    }

    /// Petition `index` at `version` (1 ..= its max version).
    pub fn petition(&self, index: u64, version: u32) -> GenPetition {
        let mut rng = self.rng(1, index);
        let not_accepted = self.rng(3, index).gen_range(0..12) == 0;
        let d = Self::division(&mut rng);
        let (div_code, district, _, streets) = DIVISIONS[d];
        // Two in a hundred records still carry a historical division code.
        let wtsddm = match (div_code, rng.gen_range(0..100)) {
            ("430112", 0..=19) => "430122",
            ("430182", 0..=19) => "430124",
            _ => div_code,
        };
        let (class_code, class_name, class_top) =
            self.classes[rng.gen_range(0..self.classes.len())].clone();
        let purpose = *pick(&mut rng, &PURPOSES);
        let form = *pick(&mut rng, &FORMS);
        let street = streets[rng.gen_range(0..4)];
        let community = COMMUNITIES[rng.gen_range(0..COMMUNITIES.len())];
        let no = rng.gen_range(1..400);
        let registered_at = self.registered_at(&mut rng, index);
        let complaint_date = registered_at.date_naive() - Duration::days(rng.gen_range(0..3));
        let group = rng.gen_range(0..100) < 6;
        let complainant_count = if group {
            rng.gen_range(5..40)
        } else {
            rng.gen_range(1..3)
        };
        let people_involved = complainant_count + rng.gen_range(0..20);
        let anonymous = rng.gen_range(0..100) < 3;
        let mut complainants = Vec::new();
        if !anonymous {
            for k in 0..complainant_count.min(3) {
                complainants.push(Complainant {
                    name: Some(self.person(&mut rng)),
                    mobile: Some(Self::mobile(&mut rng)),
                    id_type: Some(
                        if rng.gen_range(0..50) == 0 {
                            "02"
                        } else {
                            "01"
                        }
                        .to_owned(),
                    ),
                    id_number: Some(Self::id_number(&mut rng)),
                    address: Some(format!("湖南省长沙市{district}")),
                    detailed_address: Some(format!(
                        "湖南省长沙市{district}{street}{}号{}栋{}单元{}室",
                        no + k,
                        rng.gen_range(1..20),
                        rng.gen_range(1..5),
                        rng.gen_range(1..30) * 100 + rng.gen_range(1..5)
                    )),
                });
            }
            // A passport holder's number is not a resident identity number.
            for c in &mut complainants {
                if c.id_type.as_deref() == Some("02") {
                    c.id_number = Some(format!("E{:08}", rng.gen_range(0..100_000_000u32)));
                }
            }
        }
        let unit = UNITS[rng.gen_range(0..UNITS.len())];
        let years = rng.gen_range(1..6);
        let amount = rng.gen_range(3..200) * 1000;
        let demand = DEMANDS[rng.gen_range(0..DEMANDS.len())];
        let who = if group {
            format!("信访人等{complainant_count}人")
        } else {
            "信访人".to_owned()
        };
        let summary = match rng.gen_range(0..4) {
            0 => format!(
                "{who}反映：其居住在{district}{street}{community}，近{years}年来一直存在{class_name}方面的问题，\
                 涉及周边群众{people_involved}人，曾多次向社区和街道反映，至今未得到有效解决。{demand}"
            ),
            1 => format!(
                "{who}反映：{district}{street}{no}号附近发生{class_name}问题，已造成经济损失约{amount}元，\
                 相关单位互相推诿。该问题属于{class_top}领域，{demand}"
            ),
            2 => format!(
                "{who}来访称：{years}年前起，{district}{community}一带的{class_name}问题长期得不到处理，\
                 严重影响群众正常生产生活。{demand}"
            ),
            _ => format!(
                "{who}反映{class_top}方面问题：{district}{street}{class_name}，涉及金额{amount}元，\
                 信访人已向{district}{unit}反映，对处理结果不满意。{demand}"
            ),
        };
        let keywords = vec![class_name.clone(), class_top.clone(), street.to_owned()];
        let org = format!("{district}信访局");
        let responsible = format!("{district}{unit}");
        let source = SourceRef {
            system: "provincial".to_owned(),
            id: Self::petition_id(index),
            version: i64::from(version),
        };
        let mut events = vec![ProcessEvent {
            petition_source: source.clone(),
            kind: ProcessEventKind::Registered,
            occurred_at: registered_at,
            org: Some(org.clone()),
            target_org: None,
            note: None,
        }];
        let mut handling = Handling {
            registering_org: Some(org.clone()),
            deadline: Some(registered_at.date_naive() + Duration::days(60)),
            ..Handling::default()
        };
        let accepted_at = registered_at + Duration::hours(rng.gen_range(2..300));
        let replied_at = accepted_at + Duration::hours(rng.gen_range(24..900));
        let concluded_at = replied_at + Duration::hours(rng.gen_range(1..72));
        let evaluated_at = concluded_at + Duration::hours(rng.gen_range(24..400));
        let transfer = rng.gen_bool(0.5);
        let eval_result = *pick(&mut rng, &[("1", 70), ("2", 18), ("3", 12)]);
        let reason_count = rng.gen_range(1..4);
        let reason_start = rng.gen_range(0..EVAL_REASONS.len());
        let mut evaluation = None;
        if version >= 2 && not_accepted {
            handling.method = Some("07".to_owned());
            handling.accepted_at = Some(accepted_at);
            handling.concluded = true;
            events.push(ProcessEvent {
                petition_source: source.clone(),
                kind: ProcessEventKind::NotAccepted,
                occurred_at: accepted_at,
                org: Some(org.clone()),
                target_org: None,
                note: Some("不属于信访受理范围，已告知信访人通过法定途径解决".to_owned()),
            });
        } else {
            if version >= 2 {
                handling.accepted_at = Some(accepted_at);
                handling.method = Some(if transfer { "03" } else { "04" }.to_owned());
                handling.responsible_unit = Some(responsible.clone());
                events.push(ProcessEvent {
                    petition_source: source.clone(),
                    kind: ProcessEventKind::Accepted,
                    occurred_at: accepted_at,
                    org: Some(org.clone()),
                    target_org: None,
                    note: None,
                });
                events.push(ProcessEvent {
                    petition_source: source.clone(),
                    kind: if transfer {
                        ProcessEventKind::Transferred
                    } else {
                        ProcessEventKind::Assigned
                    },
                    occurred_at: accepted_at + Duration::minutes(30),
                    org: Some(org.clone()),
                    target_org: Some(responsible.clone()),
                    note: None,
                });
            }
            if version >= 3 {
                handling.replied_at = Some(replied_at);
                events.push(ProcessEvent {
                    petition_source: source.clone(),
                    kind: ProcessEventKind::Replied,
                    occurred_at: replied_at,
                    org: Some(responsible.clone()),
                    target_org: None,
                    note: Some("已书面答复信访人".to_owned()),
                });
            }
            if version >= 4 {
                handling.concluded = true;
                events.push(ProcessEvent {
                    petition_source: source.clone(),
                    kind: ProcessEventKind::Concluded,
                    occurred_at: concluded_at,
                    org: Some(responsible.clone()),
                    target_org: None,
                    note: None,
                });
            }
            if version >= 5 {
                let reasons = if eval_result == "3" {
                    (0..reason_count)
                        .map(|k| EVAL_REASONS[(reason_start + k) % EVAL_REASONS.len()].to_owned())
                        .collect()
                } else {
                    Vec::new()
                };
                evaluation = Some(Evaluation {
                    result: eval_result.to_owned(),
                    reasons,
                    responsible_department: Some(responsible.clone()),
                    unsatisfied_departments: if eval_result == "3" {
                        vec![responsible.clone()]
                    } else {
                        Vec::new()
                    },
                    evaluated_at,
                });
                events.push(ProcessEvent {
                    petition_source: source.clone(),
                    kind: ProcessEventKind::Evaluated,
                    occurred_at: evaluated_at,
                    org: None,
                    target_org: None,
                    note: None,
                });
            }
        }
        let flags = Flags {
            repeat: rng.gen_range(0..100) < 12,
            group,
            beyond_level: rng.gen_range(0..100) < 4,
            threat: rng.gen_range(0..100) < 2,
            law_related: rng.gen_range(0..100) < 8,
            superior_assigned: rng.gen_range(0..100) < 10,
            level_reached: match rng.gen_range(0..100) {
                0..=1 => Some(LevelReached::Beijing),
                2..=6 => Some(LevelReached::Province),
                7..=19 => Some(LevelReached::City),
                _ => None,
            },
        };
        let petition = Petition {
            source,
            anonymous,
            complainants,
            appeal: Appeal {
                division: wtsddm.to_owned(),
                content_class: class_code,
                purpose: purpose.to_owned(),
                form: form.to_owned(),
                summary,
                keywords,
                materials: Vec::new(),
            },
            acceptance: Acceptance {
                complainant_count,
                people_involved,
                complaint_date,
                registered_at,
                remarks: (rng.gen_range(0..10) == 0)
                    .then(|| "信访人情绪激动，需重点关注".to_owned()),
            },
            handling,
            flags,
            evaluation,
        };
        GenPetition { petition, events }
    }

    /// Work order `index` at `version` (1 ..= [`MAX_VERSION`]).
    pub fn workorder(&self, index: u64, version: u32) -> WorkOrder {
        let mut rng = self.rng(2, index);
        let d = Self::division(&mut rng);
        let (division, district, _, streets) = DIVISIONS[d];
        let street = streets[rng.gen_range(0..4)];
        let community = COMMUNITIES[rng.gen_range(0..COMMUNITIES.len())];
        let (_, class_name, class_top) = self.classes[rng.gen_range(0..self.classes.len())].clone();
        let order_type = *pick(&mut rng, &ORDER_TYPES);
        let channel = *pick(&mut rng, &CHANNELS);
        let call_time = self.registered_at(&mut rng, index);
        let no = rng.gen_range(1..400);
        let surname = SURNAMES[rng.gen_range(0..SURNAMES.len())];
        let unit = UNITS[rng.gen_range(0..UNITS.len())];
        let urgency = *pick(
            &mut rng,
            &[("normal", 85), ("urgent", 12), ("very_urgent", 3)],
        );
        let limit = if urgency == "normal" { 5 } else { 2 };
        let dispatched_at = call_time + Duration::minutes(rng.gen_range(20..240));
        let completed_at = dispatched_at + Duration::hours(rng.gen_range(4..110));
        let visited_at = completed_at + Duration::hours(rng.gen_range(12..72));
        let returned = rng.gen_range(0..10) == 0;
        let satisfied = rng.gen_range(0..100) < 82;
        let solved = rng.gen_range(0..100) < 88;
        let order_no = Self::order_no(index);
        let content = format!(
            "市民来电反映：{district}{street}{no}号附近（{community}）存在{class_name}问题，已持续{}天，\
             影响周边居民正常生活，诉求人希望相关部门尽快核实处理并回复。",
            rng.gen_range(2..60)
        );
        let (state, dispatched, completed, follow_up, result) = match version {
            1 => ("registered", None, None, None, None),
            2 => ("dispatched", Some(dispatched_at), None, None, None),
            3 => ("handling", Some(dispatched_at), None, None, None),
            4 => (
                "completed",
                Some(dispatched_at),
                Some(completed_at),
                None,
                Some(if solved { "solved" } else { "partly_solved" }),
            ),
            _ => (
                "visited",
                Some(dispatched_at),
                Some(completed_at),
                Some(FollowUp {
                    visited_at,
                    solved,
                    satisfied,
                    opinion: Some(
                        if satisfied {
                            "诉求已办理，市民表示认可"
                        } else {
                            "市民认为问题未彻底解决"
                        }
                        .to_owned(),
                    ),
                }),
                Some(if solved { "solved" } else { "partly_solved" }),
            ),
        };
        WorkOrder {
            source: SourceRef {
                system: "hotline12345".to_owned(),
                id: order_no.clone(),
                version: i64::from(version),
            },
            order_no,
            call_time,
            channel: Some(channel.to_owned()),
            caller_name: Some(format!(
                "{surname}{}",
                if rng.gen_bool(0.5) {
                    "先生"
                } else {
                    "女士"
                }
            )),
            caller_phone: Some(Self::mobile(&mut rng)),
            order_type: order_type.to_owned(),
            classification: vec![class_top.clone(), class_name.clone()],
            division: division.to_owned(),
            address: Some(format!("湖南省长沙市{district}{street}{no}号")),
            street: Some(format!("{street}街道")),
            community: Some(community.to_owned()),
            title: format!("关于{district}{street}{class_name}的诉求"),
            content,
            urgency: Some(urgency.to_owned()),
            handling_unit: (version >= 2).then(|| Unit {
                name: format!("{district}{unit}"),
                code: Some(format!(
                    "{division}-{:03}",
                    1 + UNITS.iter().position(|u| *u == unit).unwrap_or(0)
                )),
            }),
            time_limit_days: Some(limit),
            deadline: Some(call_time.date_naive() + Duration::days(i64::from(limit))),
            dispatched_at: dispatched,
            completed_at: completed,
            state: state.to_owned(),
            returns: if returned && version >= 3 {
                vec![OrderReturn {
                    reason: "不属于本单位职责范围，申请退回重新派单".to_owned(),
                    returned_at: dispatched_at + Duration::hours(3),
                }]
            } else {
                Vec::new()
            },
            extensions: u32::from(version >= 3 && rng.gen_range(0..10) == 0),
            supervised: rng.gen_range(0..20) == 0,
            overdue: false,
            follow_up,
            result: result.map(str::to_owned),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use xfhub_schemas::{validate_petition, validate_workorder};

    #[test]
    fn records_are_deterministic_and_valid() {
        let g = Generator::new(7);
        let tables = CodeTables::embedded();
        let mut classes = std::collections::HashSet::new();
        for i in 0..3000 {
            for v in [1, 2, 3, 5] {
                let p = g.petition(i, v);
                assert_eq!(p, Generator::new(7).petition(i, v), "deterministic");
                classes.insert(p.petition.appeal.content_class.clone());
                if let Err(e) = validate_petition(p.petition.clone(), tables, Utc::now()) {
                    panic!("petition {i} v{v} invalid: {e:?}");
                }
                let w = g.workorder(i, v);
                if let Err(e) = validate_workorder(w.clone(), tables, Utc::now()) {
                    panic!("work order {i} v{v} invalid: {e:?}\n{w:?}");
                }
            }
        }
        assert_eq!(classes.len(), g.classes.len(), "every leaf class occurs");
        assert_ne!(g.petition(1, 1), Generator::new(8).petition(1, 1));
    }

    #[test]
    fn later_versions_add_events_in_order() {
        let g = Generator::new(1);
        for i in 0..200 {
            let max = g.petition_max_version(i);
            let mut last = 0;
            for v in 1..=max {
                let p = g.petition(i, v);
                assert!(p.events.len() > last || v == 1, "{i} v{v}");
                last = p.events.len();
                let times: Vec<_> = p.events.iter().map(|e| e.occurred_at).collect();
                assert!(
                    times.windows(2).all(|w| w[0] <= w[1]),
                    "{i} v{v}: {times:?}"
                );
            }
        }
    }
}
