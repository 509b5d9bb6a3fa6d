//! Deterministic, valid, realistic sample records for tests, demos and the load tool.
//!
//! `sample_petition(i)` and `sample_workorder(i)` build a different record for every `i` (source
//! id derived from `i`, division, topic, dates, people vary with it), always valid against the
//! embedded code tables: the crate's tests check a few thousand of them. The people are invented;
//! their identity numbers carry a correct check character and their mobile numbers are well
//! formed, so they exercise the same paths as real data.

use chrono::{DateTime, Duration, FixedOffset, NaiveDate, TimeZone};

use crate::petition::{
    Acceptance, Appeal, Attachment, Complainant, Evaluation, Flags, Handling, Petition, SourceRef,
};
use crate::validate::id_check_char;
use crate::workorder::{FollowUp, Unit, WorkOrder};

/// The Changsha districts, counties and county-level cities (current codes).
pub const CHANGSHA_DIVISIONS: [(&str, &str); 9] = [
    ("430102", "芙蓉区"),
    ("430103", "天心区"),
    ("430104", "岳麓区"),
    ("430105", "开福区"),
    ("430111", "雨花区"),
    ("430112", "望城区"),
    ("430121", "长沙县"),
    ("430181", "浏阳市"),
    ("430182", "宁乡市"),
];

const SURNAMES: [&str; 20] = [
    "王", "李", "张", "刘", "陈", "杨", "黄", "赵", "周", "吴", "徐", "孙", "胡", "朱", "高", "林",
    "何", "郭", "马", "罗",
];
const GIVEN_NAMES: [&str; 16] = [
    "建国", "秀英", "志强", "丽华", "伟", "芳", "军", "敏", "海燕", "国平", "红梅", "晓东", "桂兰",
    "卫东", "静", "勇",
];
const ROADS: [&str; 8] = [
    "五一大道",
    "芙蓉中路",
    "韶山北路",
    "麓山南路",
    "湘江中路",
    "劳动西路",
    "人民东路",
    "东二环",
];
const MOBILE_PREFIXES: [&str; 16] = [
    "138", "139", "137", "150", "151", "158", "186", "187", "188", "135", "133", "153", "180",
    "189", "177", "199",
];

/// (content class, purpose, keywords, 12345 classification, order type)
struct Topic {
    content_class: &'static str,
    purpose: &'static str,
    keywords: [&'static str; 3],
    classification: [&'static str; 3],
    order_type: &'static str,
    unit: &'static str,
}

const TOPICS: [Topic; 6] = [
    Topic {
        content_class: "040101",
        purpose: "02",
        keywords: ["拖欠工资", "农民工", "建筑工地"],
        classification: ["劳动和社会保障", "劳动保障", "拖欠农民工工资"],
        order_type: "complaint",
        unit: "人力资源和社会保障局",
    },
    Topic {
        content_class: "030404",
        purpose: "02",
        keywords: ["物业管理", "电梯故障", "维修基金"],
        classification: ["城乡建设", "房地产市场", "物业管理"],
        order_type: "help",
        unit: "住房和城乡建设局",
    },
    Topic {
        content_class: "130102",
        purpose: "03",
        keywords: ["餐饮油烟", "扰民", "环境污染"],
        classification: ["环境保护", "大气污染", "餐饮油烟"],
        order_type: "complaint",
        unit: "生态环境分局",
    },
    Topic {
        content_class: "030102",
        purpose: "04",
        keywords: ["违法建设", "楼顶加建", "安全隐患"],
        classification: ["城乡建设", "城乡规划", "违法建设"],
        order_type: "complaint",
        unit: "城市管理和综合执法局",
    },
    Topic {
        content_class: "030402",
        purpose: "02",
        keywords: ["逾期交房", "开发商", "违约金"],
        classification: ["城乡建设", "房地产市场", "逾期交房"],
        order_type: "help",
        unit: "住房和城乡建设局",
    },
    Topic {
        content_class: "070101",
        purpose: "01",
        keywords: ["低保", "社会救助", "重新审核"],
        classification: ["民政", "社会救助", "最低生活保障"],
        order_type: "consultation",
        unit: "民政局",
    },
];

fn china() -> FixedOffset {
    FixedOffset::east_opt(8 * 3600).expect("+08:00 is a valid offset")
}

fn at(date: NaiveDate, hour: u32, minute: u32) -> DateTime<FixedOffset> {
    let naive = date
        .and_hms_opt(hour % 24, minute % 60, 0)
        .expect("hour and minute are in range");
    china()
        .from_local_datetime(&naive)
        .single()
        .expect("a fixed offset maps every local time once")
}

fn base_date(i: u64) -> NaiveDate {
    NaiveDate::from_ymd_opt(2024, 1, 2).expect("valid date") + Duration::days((i % 360) as i64)
}

/// A valid 18-digit resident identity number for `i`, with address code `division`.
pub fn sample_id_number(i: u64, division: &str) -> String {
    let year = 1950 + (i % 50);
    let month = 1 + (i / 7) % 12;
    let day = 1 + (i / 3) % 28;
    let seq = i % 1000;
    let first17 = format!("{division}{year:04}{month:02}{day:02}{seq:03}");
    let check = char::from(id_check_char(&first17));
    format!("{first17}{check}")
}

/// A valid, normalized 11-digit mobile number for `i`.
pub fn sample_mobile(i: u64) -> String {
    let prefix = MOBILE_PREFIXES[(i % 16) as usize];
    let rest = ((i % 100_000_000) * 7919 + 12_345_678) % 100_000_000;
    format!("{prefix}{rest:08}")
}

fn person_name(i: u64) -> String {
    format!(
        "{}{}",
        SURNAMES[(i % 20) as usize],
        GIVEN_NAMES[((i / 20) % 16) as usize]
    )
}

fn summary(i: u64, topic: usize, district: &str, road: &str) -> String {
    let n = 10 + i % 90;
    match topic {
        0 => format!(
            "信访人反映：其去年起在{district}{road}附近某建筑工地务工，施工方至今拖欠其本人及同班组工友\
             工资共计{}元，多次讨要，对方以工程款未结算为由推诿，向劳动保障监察部门反映后仍未解决。\
             请求有关部门督促用人单位尽快足额支付拖欠的工资。",
            n * 1000
        ),
        1 => format!(
            "信访人反映：其居住的{district}{road}{n}号小区电梯近半年频繁故障停运，多次发生困人事件，\
             小区老人和儿童较多，出行不便且存在安全隐患。业主多次报修，物业公司以维修资金不足为由拖延。\
             请求有关部门督促物业公司尽快维修电梯，指导业主依法使用专项维修资金。"
        ),
        2 => format!(
            "信访人反映：{district}{road}{n}号临街一楼多家餐饮店的排烟管道直接朝向居民楼，油烟净化设施\
             长期不运行，每天中午至深夜油烟和异味严重，居民无法开窗。居民多次向店主和社区反映，情况未见\
             好转。建议有关部门加强检查，督促商户正常使用油烟净化设施并改造排烟管道。"
        ),
        3 => format!(
            "信访人反映：{district}{road}{n}号某住户未经规划许可，在六层楼顶私自加建钢结构房屋约八十\
             平方米，已造成楼顶防水层破坏，顶层住户家中多处漏水，且存在安全隐患。信访人曾向社区和街道\
             反映，加建仍在继续。请求有关部门依法查处该违法建设，责令限期拆除并恢复原状。"
        ),
        4 => format!(
            "信访人反映：其三年前购买{district}{road}附近某楼盘商品房一套，合同约定去年六月底交房，但\
             开发商至今未能交付，工地已基本停工，开发商拒绝按合同支付逾期交房违约金，涉及业主{n}余户。\
             请求有关部门督促开发商尽快复工并明确交房时间，依法支付违约金。"
        ),
        _ => format!(
            "信访人反映：其系{district}{road}社区居民，患有慢性疾病，丧失劳动能力，家庭人均收入低于低保\
             标准。今年年初街道在年度复核中以家庭成员名下登记有机动车为由取消其低保，但该车已于{n}年前\
             报废，只是未办理注销登记。请求有关部门重新审核其家庭经济状况，恢复其最低生活保障待遇。"
        ),
    }
}

/// A valid, realistic petition (about 1.3 KB as JSON) for `i`; see the module documentation.
pub fn sample_petition(i: u64) -> Petition {
    let (division, district) = CHANGSHA_DIVISIONS[(i % 9) as usize];
    let topic_no = ((i / 9) % TOPICS.len() as u64) as usize;
    let topic = &TOPICS[topic_no];
    let road = ROADS[((i / 3) % 8) as usize];
    let complaint_date = base_date(i);
    let registered_at = at(
        complaint_date,
        9 + (i % 8) as u32,
        ((i % 60) * 7 % 60) as u32,
    );
    let group = i % 17 == 5;
    let form = ["0001", "0002", "0003", "0004"][(i % 4) as usize];
    let materials = if form == "0004" {
        vec![Attachment {
            file_name: "相关证明材料.pdf".to_owned(),
            content_type: "application/pdf".to_owned(),
            size_bytes: 150_000 + (i % 1000) * 700,
            sha256: None,
        }]
    } else {
        Vec::new()
    };
    let accepted = i % 3 != 0;
    let replied = accepted && i % 2 == 0;
    let accepted_at = accepted.then(|| registered_at + Duration::days(2 + (i % 5) as i64));
    let replied_at = replied.then(|| registered_at + Duration::days(20 + (i % 30) as i64));
    Petition {
        source: SourceRef {
            system: "api".to_owned(),
            id: format!("API-{:04}-{i:010}", 2024),
            version: 1,
        },
        anonymous: false,
        complainants: vec![Complainant {
            name: Some(person_name(i)),
            mobile: Some(sample_mobile(i)),
            id_type: Some("01".to_owned()),
            id_number: Some(sample_id_number(i, division)),
            address: Some(format!("湖南省长沙市{district}")),
            detailed_address: Some(format!(
                "湖南省长沙市{district}{road}{}号{}栋{}室",
                1 + i % 300,
                1 + i % 12,
                101 + i % 20
            )),
        }],
        appeal: Appeal {
            division: division.to_owned(),
            content_class: topic.content_class.to_owned(),
            purpose: topic.purpose.to_owned(),
            form: form.to_owned(),
            summary: summary(i, topic_no, district, road),
            keywords: topic.keywords.iter().map(|k| (*k).to_owned()).collect(),
            materials,
        },
        acceptance: Acceptance {
            complainant_count: if group { 6 } else { 1 },
            people_involved: if group {
                30 + (i % 50) as u32
            } else {
                1 + (i % 3) as u32
            },
            complaint_date,
            registered_at,
            remarks: None,
        },
        handling: Handling {
            registering_org: Some(format!("{district}信访局")),
            accepted_at,
            method: Some(if accepted { "04" } else { "03" }.to_owned()),
            responsible_unit: Some(format!("{district}{}", topic.unit)),
            deadline: Some(complaint_date + Duration::days(60)),
            replied_at,
            concluded: replied,
        },
        flags: Flags {
            repeat: i % 11 == 3,
            group,
            ..Flags::default()
        },
        evaluation: replied_at.map(|t| Evaluation {
            result: ["1", "2", "3"][(i % 3) as usize].to_owned(),
            reasons: if i % 3 == 2 {
                vec!["问题未解决".to_owned()]
            } else {
                Vec::new()
            },
            responsible_department: None,
            unsatisfied_departments: Vec::new(),
            evaluated_at: t + Duration::days(3),
        }),
    }
}

/// A valid, realistic 12345 work order for `i`.
pub fn sample_workorder(i: u64) -> WorkOrder {
    let (division, district) = CHANGSHA_DIVISIONS[(i % 9) as usize];
    let topic = &TOPICS[((i / 9) % TOPICS.len() as u64) as usize];
    let road = ROADS[((i / 3) % 8) as usize];
    let call_time = at(
        base_date(i),
        8 + (i % 12) as u32,
        ((i % 60) * 13 % 60) as u32,
    );
    let order_no = format!("GD{:04}{i:010}", 2024);
    let completed = i % 2 == 0;
    let dispatched_at = call_time + Duration::hours(2);
    let completed_at = completed.then(|| call_time + Duration::days(3));
    let title = format!("关于{district}{road}{}的诉求", topic.classification[2]);
    WorkOrder {
        source: SourceRef {
            system: "hotline12345".to_owned(),
            id: order_no.clone(),
            version: 1 + (i % 3) as i64,
        },
        order_no,
        call_time,
        channel: Some(["电话", "网站", "微信", "湘易办"][(i % 4) as usize].to_owned()),
        caller_name: Some(format!(
            "{}{}",
            SURNAMES[(i % 20) as usize],
            if i % 2 == 0 { "先生" } else { "女士" }
        )),
        caller_phone: Some(sample_mobile(i.wrapping_add(7))),
        order_type: topic.order_type.to_owned(),
        classification: topic.classification.iter().map(|c| (*c).to_owned()).collect(),
        division: division.to_owned(),
        address: Some(format!("湖南省长沙市{district}{road}{}号", 1 + i % 300)),
        street: Some(format!("{road}街道")),
        community: Some(format!("{road}社区")),
        content: format!(
            "市民来电反映：{district}{road}{}号附近存在{}问题，已持续一段时间，影响周边居民正常生活，\
             诉求人希望相关部门尽快核实处理并回复。",
            1 + i % 300,
            topic.keywords[0]
        ),
        title,
        urgency: Some(if i % 10 == 0 { "urgent" } else { "normal" }.to_owned()),
        handling_unit: Some(Unit {
            name: format!("{district}{}", topic.unit),
            code: Some(format!("{division}-{:03}", 1 + (i / 9) % 6)),
        }),
        time_limit_days: Some(5),
        deadline: Some(call_time.date_naive() + Duration::days(5)),
        dispatched_at: Some(dispatched_at),
        completed_at,
        state: if completed { "completed" } else { "handling" }.to_owned(),
        returns: Vec::new(),
        extensions: 0,
        supervised: i % 13 == 0,
        overdue: false,
        follow_up: completed_at.map(|t| FollowUp {
            visited_at: t + Duration::days(1),
            solved: true,
            satisfied: i % 4 != 2,
            opinion: Some("诉求已办理，市民表示认可".to_owned()),
        }),
        result: completed.then(|| "solved".to_owned()),
    }
}
