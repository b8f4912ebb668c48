//! What the pages say, in each language. A struct, not a file read at run time: a language that
//! leaves out a sentence does not compile.
//!
//! Placeholders: `{n}` a number of minutes, `{h}` and `{m}` hours and minutes, `{s}` seconds,
//! `{t}` a countdown such as `4:05`.

use serde::Serialize;

/// Every sentence of the pages in one language. The fields the page's script needs after it
/// loads are serialized into the page (see [`ScriptText`]).
#[derive(Debug, Serialize)]
pub struct Text {
    pub waiting_title: &'static str,
    pub intro_placed: &'static str,
    pub intro_unplaced: &'static str,
    pub position_label: &'static str,
    pub eta_label: &'static str,
    pub progress_label: &'static str,
    pub no_place: &'static str,
    pub no_place_ticket: &'static str,
    pub updated_label: &'static str,
    pub just_now: &'static str,
    pub room_label: &'static str,
    pub ticket_label: &'static str,
    pub languages_label: &'static str,
    pub script: ScriptText,

    pub unavailable_title: &'static str,
    pub unavailable_message: &'static str,
    pub full_title: &'static str,
    pub full_message: &'static str,
    pub too_many_joins_title: &'static str,
    /// `{s}`: the seconds until the page tries again.
    pub too_many_joins_message: &'static str,
    pub invite_required_title: &'static str,
    pub invite_required_message: &'static str,
    pub invite_used_title: &'static str,
    pub invite_used_message: &'static str,
    pub closed_title: &'static str,
    pub closed_message: &'static str,
    pub challenge_failed_title: &'static str,
    pub challenge_failed_message: &'static str,
}

/// The sentences the waiting page's script writes as the answers change.
#[derive(Debug, Serialize)]
pub struct ScriptText {
    pub turn_title: &'static str,
    pub taking_you_in: &'static str,
    pub random_position: &'static str,
    pub random_message: &'static str,
    pub prequeue_position: &'static str,
    pub prequeue_message: &'static str,
    pub opens_soon: &'static str,
    /// `{t}`: the time left, `m:ss`.
    pub opens_in: &'static str,
    pub unknown_message: &'static str,
    pub estimate_message: &'static str,
    pub wait_unknown: &'static str,
    pub wait_under_minute: &'static str,
    pub wait_one_minute: &'static str,
    /// `{n}`: minutes, 2 to 59.
    pub wait_minutes: &'static str,
    /// `{h}`, `{m}`: hours and minutes.
    pub wait_hours: &'static str,
    /// `{p}`: how far, in percent.
    pub progress: &'static str,
}

pub const EN: Text = Text {
    waiting_title: "You are in line",
    intro_placed:
        "This site is busy right now. Your place is kept, and you will be let in \
        automatically as soon as there is room. Keep this page open; you do not need to refresh it.",
    intro_unplaced: "This page takes a place in line for you when it loads again, in a moment.",
    position_label: "Your place in line",
    eta_label: "Estimated wait",
    progress_label: "How far you have come since you joined",
    no_place: "You have no place in line yet.",
    no_place_ticket: "none yet",
    updated_label: "Last updated",
    just_now: "just now",
    room_label: "Room",
    ticket_label: "Ticket",
    languages_label: "Language",
    script: ScriptText {
        turn_title: "It is your turn",
        taking_you_in: "Taking you in now…",
        random_position: "drawn at random",
        random_message: "People are let in by a random draw among everyone waiting: each draw \
            gives you the same chance as anyone else, however long you have waited. The estimate \
            is the average wait.",
        prequeue_position: "kept until the opening",
        prequeue_message: "The sale has not opened yet. You have a place; when it opens, people \
            are let in from the line, and this page takes you in when it is your turn.",
        opens_soon: "the sale opens soon",
        opens_in: "opens in {t}",
        unknown_message: "The wait cannot be estimated yet (nobody is being let in, or how fast \
            is not known yet); your place is kept.",
        estimate_message: "The estimate follows how fast people are being let in.",
        wait_unknown: "unknown",
        wait_under_minute: "under a minute",
        wait_one_minute: "about 1 minute",
        wait_minutes: "about {n} minutes",
        wait_hours: "about {h} h {m} min",
        progress: "{p} % of the way",
    },
    unavailable_title: "One moment, please",
    unavailable_message: "The waiting room for this site cannot reach its queue right now. \
        Nobody is being let in until it can. This page tries again by itself; your place, if you \
        had one, is kept.",
    full_title: "The line is full",
    full_message: "So many people are waiting already that this waiting room is taking nobody \
        new for now. This page tries again by itself in a moment; keep it open.",
    too_many_joins_title: "Too many visitors from your network",
    too_many_joins_message: "Many people sharing your internet connection joined this waiting \
        room just now, and each connection may only join so often. This page tries again by \
        itself in {s} seconds; nothing you already hold is lost.",
    invite_required_title: "This waiting room is by invitation",
    invite_required_message: "Only visitors with an invitation can join this line. Open the \
        link from your invitation to join.",
    invite_used_title: "This invitation has been used",
    invite_used_message: "Each invitation lets one visitor into the line once, and this one has \
        been used. If it was yours, go back to the window where you joined.",
    closed_title: "This waiting room is closed",
    closed_message: "It is not taking anyone new at the moment. If you already had a place in \
        line, open the page where you joined.",
    challenge_failed_title: "We could not check your browser",
    challenge_failed_message: "Your browser's answer to the waiting room's check was not \
        accepted. Load this page again to try once more.",
};

pub const KO: Text = Text {
    waiting_title: "대기열에 들어와 있습니다",
    intro_placed: "지금 이 사이트에 접속자가 많습니다. 순서는 유지되며, 자리가 나는 대로 자동으로 \
        입장합니다. 이 페이지를 열어 두세요. 새로고침하지 않아도 됩니다.",
    intro_unplaced: "잠시 후 이 페이지가 다시 열리면서 대기열에 자리를 잡아 드립니다.",
    position_label: "내 대기 순서",
    eta_label: "예상 대기 시간",
    progress_label: "대기열에 들어온 뒤 진행된 정도",
    no_place: "아직 대기열에 자리가 없습니다.",
    no_place_ticket: "아직 없음",
    updated_label: "마지막 업데이트",
    just_now: "방금",
    room_label: "대기실",
    ticket_label: "티켓",
    languages_label: "언어",
    script: ScriptText {
        turn_title: "입장할 차례입니다",
        taking_you_in: "지금 입장하는 중…",
        random_position: "무작위 추첨",
        random_message: "입장은 대기 중인 모든 사람을 대상으로 한 무작위 추첨으로 정해집니다. \
            얼마나 오래 기다렸든 매 추첨마다 모두 같은 확률을 가집니다. 예상 시간은 평균 대기 시간입니다.",
        prequeue_position: "오픈 때까지 유지됨",
        prequeue_message: "아직 판매가 시작되지 않았습니다. 자리는 확보되어 있으며, 판매가 시작되면 \
            대기열 순서대로 입장하고 차례가 되면 이 페이지가 자동으로 이동합니다.",
        opens_soon: "곧 판매가 시작됩니다",
        opens_in: "{t} 후 시작",
        unknown_message: "아직 대기 시간을 예상할 수 없습니다(입장이 진행되지 않고 있거나 속도를 \
            아직 알 수 없습니다). 순서는 유지됩니다.",
        estimate_message: "예상 시간은 현재 입장 속도에 따라 계산됩니다.",
        wait_unknown: "알 수 없음",
        wait_under_minute: "1분 미만",
        wait_one_minute: "약 1분",
        wait_minutes: "약 {n}분",
        wait_hours: "약 {h}시간 {m}분",
        progress: "{p}% 진행",
    },
    unavailable_title: "잠시만 기다려 주세요",
    unavailable_message: "이 사이트의 대기실이 지금 대기열에 연결할 수 없습니다. 연결될 때까지 \
        아무도 입장하지 않습니다. 이 페이지는 스스로 다시 시도하며, 이미 자리가 있었다면 그대로 유지됩니다.",
    full_title: "대기열이 가득 찼습니다",
    full_message: "이미 기다리는 사람이 너무 많아 지금은 새로 대기열에 들어올 수 없습니다. 이 \
        페이지는 잠시 후 스스로 다시 시도하니 열어 두세요.",
    too_many_joins_title: "같은 네트워크에서 접속한 사람이 너무 많습니다",
    too_many_joins_message: "같은 인터넷 연결을 쓰는 여러 사람이 방금 이 대기실에 들어왔고, 연결마다 \
        들어올 수 있는 횟수가 정해져 있습니다. 이 페이지는 {s}초 후 스스로 다시 시도하며, 이미 가진 \
        것은 잃지 않습니다.",
    invite_required_title: "초대받은 사람만 들어올 수 있는 대기실입니다",
    invite_required_message: "초대를 받은 방문자만 이 대기열에 들어올 수 있습니다. 초대장에 있는 \
        링크를 열어 들어오세요.",
    invite_used_title: "이미 사용된 초대입니다",
    invite_used_message: "초대 하나로 한 명이 한 번만 대기열에 들어올 수 있으며, 이 초대는 이미 \
        사용되었습니다. 본인이 사용했다면 처음 들어온 창으로 돌아가세요.",
    closed_title: "대기실이 닫혀 있습니다",
    closed_message: "지금은 새로 들어올 수 없습니다. 이미 대기열에 자리가 있었다면 처음 들어온 \
        페이지를 여세요.",
    challenge_failed_title: "브라우저를 확인하지 못했습니다",
    challenge_failed_message: "대기실의 확인 절차에 대한 브라우저의 응답이 받아들여지지 \
        않았습니다. 이 페이지를 다시 열어 한 번 더 시도하세요.",
};

pub const JA: Text = Text {
    waiting_title: "順番待ちの列に並んでいます",
    intro_placed: "ただいまこのサイトは混み合っています。順番は確保されており、空きができしだい\
        自動的にご案内します。このページを開いたままにしてください。再読み込みは不要です。",
    intro_unplaced: "このページはまもなく再読み込みされ、そのときに列の順番を確保します。",
    position_label: "あなたの順番",
    eta_label: "推定待ち時間",
    progress_label: "並び始めてからの進み具合",
    no_place: "まだ列に並んでいません。",
    no_place_ticket: "まだありません",
    updated_label: "最終更新",
    just_now: "たった今",
    room_label: "ルーム",
    ticket_label: "チケット",
    languages_label: "言語",
    script: ScriptText {
        turn_title: "あなたの番です",
        taking_you_in: "ただいまご案内しています…",
        random_position: "抽選",
        random_message:
            "入場は待っている全員を対象にした抽選で決まります。待った時間にかかわらず、\
            毎回の抽選で全員が同じ確率です。推定時間は平均の待ち時間です。",
        prequeue_position: "販売開始まで確保",
        prequeue_message:
            "販売はまだ始まっていません。順番は確保されています。販売が始まると列から\
            順にご案内し、あなたの番になるとこのページが自動的に移動します。",
        opens_soon: "まもなく販売開始",
        opens_in: "開始まで {t}",
        unknown_message: "待ち時間はまだ推定できません（入場が止まっているか、進む速さがまだ\
            分かりません）。順番は確保されています。",
        estimate_message: "推定時間は現在の入場の速さに基づいています。",
        wait_unknown: "不明",
        wait_under_minute: "1分未満",
        wait_one_minute: "約1分",
        wait_minutes: "約{n}分",
        wait_hours: "約{h}時間{m}分",
        progress: "{p}% 進みました",
    },
    unavailable_title: "少々お待ちください",
    unavailable_message: "このサイトの待合室は現在、列に接続できません。接続できるまでどなたも\
        入場できません。このページは自動的に再試行します。すでに順番があればそのまま確保されます。",
    full_title: "列が満員です",
    full_message: "すでに多くの方が待っているため、現在この待合室は新しい方を受け付けていません。\
        このページはまもなく自動的に再試行しますので、開いたままにしてください。",
    too_many_joins_title: "同じネットワークからのアクセスが多すぎます",
    too_many_joins_message:
        "同じインターネット接続を使う多くの方がたった今この待合室に並びました。\
        接続ごとに並べる回数には限りがあります。このページは {s} 秒後に自動的に再試行します。\
        すでにお持ちのものは失われません。",
    invite_required_title: "この待合室は招待制です",
    invite_required_message: "招待を受けた方だけがこの列に並べます。招待状のリンクを開いて\
        お並びください。",
    invite_used_title: "この招待はすでに使われています",
    invite_used_message: "招待1件につき1人が1回だけ列に並べます。この招待はすでに使われました。\
        ご自身で使った場合は、並んだときのウィンドウに戻ってください。",
    closed_title: "この待合室は閉じています",
    closed_message: "現在は新しい方を受け付けていません。すでに順番をお持ちの場合は、並んだときの\
        ページを開いてください。",
    challenge_failed_title: "ブラウザを確認できませんでした",
    challenge_failed_message: "待合室の確認に対するブラウザの応答が受け付けられませんでした。\
        もう一度このページを読み込んでお試しください。",
};

pub const ZH_HANS: Text = Text {
    waiting_title: "您正在排队",
    intro_placed: "本网站目前访问人数较多。您的位置已保留，一有空位就会自动让您进入。请保持此页面\
        打开，无需刷新。",
    intro_unplaced: "此页面稍后重新加载时，会为您在队列中占一个位置。",
    position_label: "您的排队位置",
    eta_label: "预计等待时间",
    progress_label: "自加入以来的进度",
    no_place: "您还没有排队位置。",
    no_place_ticket: "暂无",
    updated_label: "最后更新",
    just_now: "刚刚",
    room_label: "等候室",
    ticket_label: "票号",
    languages_label: "语言",
    script: ScriptText {
        turn_title: "轮到您了",
        taking_you_in: "正在带您进入…",
        random_position: "随机抽取",
        random_message: "进入顺序由所有等待者中的随机抽取决定：无论您等了多久，每次抽取您与其他人\
            的机会都相同。预计时间为平均等待时间。",
        prequeue_position: "保留至开售",
        prequeue_message: "销售尚未开始。您已有位置；开售后将按队列顺序放行，轮到您时此页面会自动\
            带您进入。",
        opens_soon: "即将开售",
        opens_in: "{t} 后开售",
        unknown_message: "暂时无法估算等待时间（目前没有放行，或放行速度尚不清楚）；您的位置\
            已保留。",
        estimate_message: "预计时间根据当前的放行速度计算。",
        wait_unknown: "未知",
        wait_under_minute: "不到 1 分钟",
        wait_one_minute: "约 1 分钟",
        wait_minutes: "约 {n} 分钟",
        wait_hours: "约 {h} 小时 {m} 分钟",
        progress: "已完成 {p}%",
    },
    unavailable_title: "请稍候",
    unavailable_message: "本网站的等候室暂时无法连接到队列。在恢复连接之前不会放行任何人。此页面\
        会自动重试；如果您已有位置，位置会保留。",
    full_title: "队列已满",
    full_message: "等待的人数已经太多，此等候室暂时不再接收新的访客。此页面稍后会自动重试，请保持\
        打开。",
    too_many_joins_title: "来自您网络的访客过多",
    too_many_joins_message: "与您共用同一网络连接的许多人刚刚加入了此等候室，而每个连接的加入\
        次数有限。此页面将在 {s} 秒后自动重试；您已有的一切都不会丢失。",
    invite_required_title: "此等候室仅限受邀者",
    invite_required_message: "只有受到邀请的访客才能加入此队列。请打开邀请中的链接加入。",
    invite_used_title: "此邀请已被使用",
    invite_used_message: "每份邀请只能让一位访客加入队列一次，而此邀请已被使用。如果是您本人\
        使用的，请回到您加入时的窗口。",
    closed_title: "此等候室已关闭",
    closed_message: "目前不接收新的访客。如果您已在队列中，请打开您加入时的页面。",
    challenge_failed_title: "我们无法验证您的浏览器",
    challenge_failed_message: "您的浏览器对等候室验证的回应未被接受。请重新加载此页面再试一次。",
};

pub const ZH_HANT: Text = Text {
    waiting_title: "您正在排隊",
    intro_placed: "本網站目前人潮眾多。您的位置已保留，一有空位就會自動讓您進入。請保持此頁面\
        開啟，無須重新整理。",
    intro_unplaced: "此頁面稍後重新載入時，會為您在隊伍中取得一個位置。",
    position_label: "您的排隊位置",
    eta_label: "預估等候時間",
    progress_label: "加入後的進度",
    no_place: "您尚未取得排隊位置。",
    no_place_ticket: "尚無",
    updated_label: "最後更新",
    just_now: "剛剛",
    room_label: "等候室",
    ticket_label: "票號",
    languages_label: "語言",
    script: ScriptText {
        turn_title: "輪到您了",
        taking_you_in: "正在帶您進入…",
        random_position: "隨機抽選",
        random_message: "進入順序由所有等候者中的隨機抽選決定：無論您等了多久，每次抽選您與其他人\
            的機會都相同。預估時間為平均等候時間。",
        prequeue_position: "保留至開賣",
        prequeue_message: "銷售尚未開始。您已有位置；開賣後將依隊伍順序放行，輪到您時此頁面會自動\
            帶您進入。",
        opens_soon: "即將開賣",
        opens_in: "{t} 後開賣",
        unknown_message: "暫時無法預估等候時間（目前沒有放行，或放行速度尚不清楚）；您的位置\
            已保留。",
        estimate_message: "預估時間依目前的放行速度計算。",
        wait_unknown: "未知",
        wait_under_minute: "不到 1 分鐘",
        wait_one_minute: "約 1 分鐘",
        wait_minutes: "約 {n} 分鐘",
        wait_hours: "約 {h} 小時 {m} 分鐘",
        progress: "已完成 {p}%",
    },
    unavailable_title: "請稍候",
    unavailable_message: "本網站的等候室暫時無法連線到隊伍。在恢復連線之前不會放行任何人。此頁面\
        會自動重試；如果您已有位置，位置會保留。",
    full_title: "隊伍已滿",
    full_message: "等候的人數已經太多，此等候室暫時不再接受新的訪客。此頁面稍後會自動重試，請保持\
        開啟。",
    too_many_joins_title: "來自您網路的訪客過多",
    too_many_joins_message: "與您共用同一網路連線的許多人剛剛加入了此等候室，而每個連線的加入\
        次數有限。此頁面將在 {s} 秒後自動重試；您已有的一切都不會遺失。",
    invite_required_title: "此等候室僅限受邀者",
    invite_required_message: "只有受邀的訪客才能加入此隊伍。請開啟邀請中的連結加入。",
    invite_used_title: "此邀請已被使用",
    invite_used_message: "每份邀請只能讓一位訪客加入隊伍一次，而此邀請已被使用。如果是您本人\
        使用的，請回到您加入時的視窗。",
    closed_title: "此等候室已關閉",
    closed_message: "目前不接受新的訪客。如果您已在隊伍中，請開啟您加入時的頁面。",
    challenge_failed_title: "我們無法驗證您的瀏覽器",
    challenge_failed_message: "您的瀏覽器對等候室驗證的回應未被接受。請重新載入此頁面再試一次。",
};

pub const ES: Text = Text {
    waiting_title: "Estás en la fila",
    intro_placed: "Este sitio está muy solicitado en este momento. Tu lugar está guardado y \
        entrarás automáticamente en cuanto haya sitio. Mantén esta página abierta; no hace falta \
        recargarla.",
    intro_unplaced: "Esta página te dará un lugar en la fila cuando vuelva a cargarse, en un \
        momento.",
    position_label: "Tu lugar en la fila",
    eta_label: "Espera estimada",
    progress_label: "Cuánto has avanzado desde que entraste en la fila",
    no_place: "Todavía no tienes lugar en la fila.",
    no_place_ticket: "todavía ninguno",
    updated_label: "Última actualización",
    just_now: "ahora mismo",
    room_label: "Sala",
    ticket_label: "Ticket",
    languages_label: "Idioma",
    script: ScriptText {
        turn_title: "Es tu turno",
        taking_you_in: "Te estamos dejando entrar…",
        random_position: "por sorteo",
        random_message: "Se entra por sorteo entre todas las personas que esperan: cada sorteo te \
            da la misma oportunidad que a cualquiera, sin importar cuánto hayas esperado. La \
            estimación es la espera media.",
        prequeue_position: "guardado hasta la apertura",
        prequeue_message: "La venta aún no ha empezado. Tienes un lugar; cuando abra, se dejará \
            entrar a la gente de la fila y esta página te llevará dentro cuando sea tu turno.",
        opens_soon: "la venta abre pronto",
        opens_in: "abre en {t}",
        unknown_message: "Aún no se puede estimar la espera (no está entrando nadie o todavía no \
            se sabe a qué ritmo); tu lugar está guardado.",
        estimate_message: "La estimación sigue el ritmo al que está entrando la gente.",
        wait_unknown: "desconocida",
        wait_under_minute: "menos de un minuto",
        wait_one_minute: "aprox. 1 minuto",
        wait_minutes: "aprox. {n} minutos",
        wait_hours: "aprox. {h} h {m} min",
        progress: "{p} % del camino",
    },
    unavailable_title: "Un momento, por favor",
    unavailable_message: "La sala de espera de este sitio no puede acceder a su fila en este \
        momento. No entrará nadie hasta que pueda. Esta página lo vuelve a intentar sola; si \
        tenías un lugar, lo conservas.",
    full_title: "La fila está llena",
    full_message: "Ya hay tanta gente esperando que esta sala de espera no admite a nadie más \
        por ahora. Esta página lo vuelve a intentar sola en un momento; mantenla abierta.",
    too_many_joins_title: "Demasiados visitantes desde tu red",
    too_many_joins_message:
        "Muchas personas que comparten tu conexión a internet acaban de \
        entrar en esta sala de espera, y cada conexión solo puede hacerlo cada cierto tiempo. \
        Esta página lo vuelve a intentar sola en {s} segundos; no pierdes nada de lo que ya tienes.",
    invite_required_title: "Esta sala de espera es solo con invitación",
    invite_required_message: "Solo los visitantes con invitación pueden entrar en esta fila. \
        Abre el enlace de tu invitación para entrar.",
    invite_used_title: "Esta invitación ya se ha usado",
    invite_used_message: "Cada invitación permite a un visitante entrar en la fila una sola vez, \
        y esta ya se ha usado. Si era tuya, vuelve a la ventana en la que entraste.",
    closed_title: "Esta sala de espera está cerrada",
    closed_message: "Ahora mismo no admite a nadie nuevo. Si ya tenías un lugar en la fila, abre \
        la página en la que entraste.",
    challenge_failed_title: "No hemos podido comprobar tu navegador",
    challenge_failed_message: "No se aceptó la respuesta de tu navegador a la comprobación de la \
        sala de espera. Vuelve a cargar esta página para intentarlo de nuevo.",
};

pub const FR: Text = Text {
    waiting_title: "Vous êtes dans la file",
    intro_placed: "Ce site est très demandé en ce moment. Votre place est gardée et vous \
        entrerez automatiquement dès qu’il y aura de la place. Gardez cette page ouverte ; inutile \
        de l’actualiser.",
    intro_unplaced: "Cette page vous prend une place dans la file quand elle se recharge, dans \
        un instant.",
    position_label: "Votre place dans la file",
    eta_label: "Attente estimée",
    progress_label: "Le chemin parcouru depuis votre arrivée",
    no_place: "Vous n’avez pas encore de place dans la file.",
    no_place_ticket: "pas encore",
    updated_label: "Dernière mise à jour",
    just_now: "à l’instant",
    room_label: "Salle",
    ticket_label: "Ticket",
    languages_label: "Langue",
    script: ScriptText {
        turn_title: "C’est votre tour",
        taking_you_in: "Nous vous faisons entrer…",
        random_position: "tirage au sort",
        random_message: "Les entrées se font par tirage au sort parmi toutes les personnes qui \
            attendent : chaque tirage vous donne la même chance qu’à n’importe qui, quelle que soit \
            votre attente. L’estimation est l’attente moyenne.",
        prequeue_position: "gardée jusqu’à l’ouverture",
        prequeue_message: "La vente n’a pas encore commencé. Vous avez une place ; à l’ouverture, \
            les personnes entrent depuis la file, et cette page vous fait entrer à votre tour.",
        opens_soon: "la vente ouvre bientôt",
        opens_in: "ouverture dans {t}",
        unknown_message: "L’attente ne peut pas encore être estimée (personne n’entre pour \
            l’instant, ou le rythme n’est pas encore connu) ; votre place est gardée.",
        estimate_message: "L’estimation suit le rythme auquel les personnes entrent.",
        wait_unknown: "inconnue",
        wait_under_minute: "moins d’une minute",
        wait_one_minute: "environ 1 minute",
        wait_minutes: "environ {n} minutes",
        wait_hours: "environ {h} h {m} min",
        progress: "{p} % du chemin",
    },
    unavailable_title: "Un instant, s’il vous plaît",
    unavailable_message: "La salle d’attente de ce site ne peut pas joindre sa file pour le \
        moment. Personne n’entre tant qu’elle ne le peut pas. Cette page réessaie d’elle-même ; \
        si vous aviez une place, elle est gardée.",
    full_title: "La file est complète",
    full_message: "Tant de personnes attendent déjà que cette salle d’attente n’accepte plus \
        personne pour l’instant. Cette page réessaie d’elle-même dans un instant ; gardez-la \
        ouverte.",
    too_many_joins_title: "Trop de visiteurs depuis votre réseau",
    too_many_joins_message: "De nombreuses personnes partageant votre connexion internet viennent \
        de rejoindre cette salle d’attente, et chaque connexion ne peut le faire qu’à un certain \
        rythme. Cette page réessaie d’elle-même dans {s} secondes ; vous ne perdez rien de ce \
        que vous avez déjà.",
    invite_required_title: "Cette salle d’attente est sur invitation",
    invite_required_message: "Seuls les visiteurs invités peuvent rejoindre cette file. Ouvrez \
        le lien de votre invitation pour la rejoindre.",
    invite_used_title: "Cette invitation a déjà servi",
    invite_used_message: "Chaque invitation fait entrer un visiteur dans la file une seule fois, \
        et celle-ci a déjà servi. Si c’était la vôtre, revenez à la fenêtre où vous êtes entré.",
    closed_title: "Cette salle d’attente est fermée",
    closed_message: "Elle n’accepte personne de nouveau pour le moment. Si vous aviez déjà une \
        place dans la file, ouvrez la page où vous l’avez prise.",
    challenge_failed_title: "Nous n’avons pas pu vérifier votre navigateur",
    challenge_failed_message: "La réponse de votre navigateur à la vérification de la salle \
        d’attente n’a pas été acceptée. Rechargez cette page pour réessayer.",
};

pub const DE: Text = Text {
    waiting_title: "Sie sind in der Warteschlange",
    intro_placed: "Diese Website ist gerade stark gefragt. Ihr Platz bleibt reserviert, und Sie \
        werden automatisch eingelassen, sobald Platz frei ist. Lassen Sie diese Seite geöffnet; \
        Sie müssen sie nicht neu laden.",
    intro_unplaced: "Diese Seite reserviert Ihnen einen Platz in der Warteschlange, wenn sie \
        gleich neu lädt.",
    position_label: "Ihr Platz in der Schlange",
    eta_label: "Geschätzte Wartezeit",
    progress_label: "Wie weit Sie seit Ihrer Ankunft gekommen sind",
    no_place: "Sie haben noch keinen Platz in der Warteschlange.",
    no_place_ticket: "noch keins",
    updated_label: "Zuletzt aktualisiert",
    just_now: "gerade eben",
    room_label: "Raum",
    ticket_label: "Ticket",
    languages_label: "Sprache",
    script: ScriptText {
        turn_title: "Sie sind an der Reihe",
        taking_you_in: "Sie werden jetzt eingelassen…",
        random_position: "per Los",
        random_message: "Eingelassen wird per Los unter allen Wartenden: Jede Ziehung gibt Ihnen \
            dieselbe Chance wie allen anderen, egal wie lange Sie schon warten. Die Schätzung ist \
            die durchschnittliche Wartezeit.",
        prequeue_position: "bis zum Start reserviert",
        prequeue_message: "Der Verkauf hat noch nicht begonnen. Sie haben einen Platz; zum Start \
            werden die Wartenden der Reihe nach eingelassen, und diese Seite bringt Sie hinein, \
            wenn Sie an der Reihe sind.",
        opens_soon: "der Verkauf beginnt bald",
        opens_in: "Start in {t}",
        unknown_message: "Die Wartezeit lässt sich noch nicht schätzen (niemand wird gerade \
            eingelassen, oder wie schnell, ist noch nicht bekannt); Ihr Platz bleibt reserviert.",
        estimate_message: "Die Schätzung folgt dem Tempo, in dem eingelassen wird.",
        wait_unknown: "unbekannt",
        wait_under_minute: "unter einer Minute",
        wait_one_minute: "etwa 1 Minute",
        wait_minutes: "etwa {n} Minuten",
        wait_hours: "etwa {h} Std. {m} Min.",
        progress: "{p} % geschafft",
    },
    unavailable_title: "Einen Moment bitte",
    unavailable_message: "Der Warteraum dieser Website erreicht seine Warteschlange gerade \
        nicht. Bis er sie erreicht, wird niemand eingelassen. Diese Seite versucht es von selbst \
        erneut; Ihr Platz, falls Sie einen hatten, bleibt erhalten.",
    full_title: "Die Warteschlange ist voll",
    full_message: "Es warten schon so viele Menschen, dass dieser Warteraum vorerst niemanden \
        mehr aufnimmt. Diese Seite versucht es gleich von selbst erneut; lassen Sie sie geöffnet.",
    too_many_joins_title: "Zu viele Besucher aus Ihrem Netz",
    too_many_joins_message: "Viele Menschen, die Ihre Internetverbindung teilen, haben sich \
        gerade in diesen Warteraum eingereiht, und jede Verbindung darf das nur so oft. Diese \
        Seite versucht es in {s} Sekunden von selbst erneut; nichts, was Sie schon haben, geht \
        verloren.",
    invite_required_title: "Dieser Warteraum ist nur mit Einladung",
    invite_required_message: "Nur eingeladene Besucher können sich in diese Warteschlange \
        einreihen. Öffnen Sie den Link aus Ihrer Einladung.",
    invite_used_title: "Diese Einladung wurde schon benutzt",
    invite_used_message: "Jede Einladung lässt einen Besucher einmal in die Warteschlange, und \
        diese wurde schon benutzt. Wenn es Ihre war, kehren Sie zu dem Fenster zurück, in dem Sie \
        sich eingereiht haben.",
    closed_title: "Dieser Warteraum ist geschlossen",
    closed_message: "Er nimmt gerade niemanden neu auf. Wenn Sie schon einen Platz hatten, \
        öffnen Sie die Seite, auf der Sie sich eingereiht haben.",
    challenge_failed_title: "Ihr Browser konnte nicht geprüft werden",
    challenge_failed_message: "Die Antwort Ihres Browsers auf die Prüfung des Warteraums wurde \
        nicht angenommen. Laden Sie diese Seite neu, um es noch einmal zu versuchen.",
};

pub const PT_BR: Text = Text {
    waiting_title: "Você está na fila",
    intro_placed: "Este site está muito movimentado agora. Seu lugar está guardado e você \
        entrará automaticamente assim que houver espaço. Mantenha esta página aberta; não é \
        preciso atualizá-la.",
    intro_unplaced: "Esta página pega um lugar na fila para você quando carregar de novo, em \
        instantes.",
    position_label: "Seu lugar na fila",
    eta_label: "Espera estimada",
    progress_label: "Quanto você já avançou desde que entrou na fila",
    no_place: "Você ainda não tem lugar na fila.",
    no_place_ticket: "ainda nenhum",
    updated_label: "Última atualização",
    just_now: "agora mesmo",
    room_label: "Sala",
    ticket_label: "Ticket",
    languages_label: "Idioma",
    script: ScriptText {
        turn_title: "Chegou a sua vez",
        taking_you_in: "Levando você para dentro…",
        random_position: "por sorteio",
        random_message: "A entrada é por sorteio entre todas as pessoas que esperam: cada sorteio \
            dá a você a mesma chance que a qualquer outra pessoa, não importa quanto tempo tenha \
            esperado. A estimativa é a espera média.",
        prequeue_position: "guardado até a abertura",
        prequeue_message: "As vendas ainda não começaram. Você tem um lugar; quando abrirem, as \
            pessoas entram pela fila, e esta página leva você para dentro quando for a sua vez.",
        opens_soon: "as vendas abrem em breve",
        opens_in: "abre em {t}",
        unknown_message: "Ainda não é possível estimar a espera (ninguém está entrando, ou o \
            ritmo ainda não é conhecido); seu lugar está guardado.",
        estimate_message: "A estimativa acompanha o ritmo em que as pessoas estão entrando.",
        wait_unknown: "desconhecida",
        wait_under_minute: "menos de um minuto",
        wait_one_minute: "cerca de 1 minuto",
        wait_minutes: "cerca de {n} minutos",
        wait_hours: "cerca de {h} h {m} min",
        progress: "{p}% do caminho",
    },
    unavailable_title: "Um momento, por favor",
    unavailable_message: "A sala de espera deste site não consegue acessar a fila agora. \
        Ninguém entra até que consiga. Esta página tenta de novo sozinha; seu lugar, se você \
        tinha um, está guardado.",
    full_title: "A fila está cheia",
    full_message: "Já há tanta gente esperando que esta sala de espera não está aceitando \
        ninguém novo por enquanto. Esta página tenta de novo sozinha em instantes; mantenha-a \
        aberta.",
    too_many_joins_title: "Visitantes demais da sua rede",
    too_many_joins_message: "Muitas pessoas que compartilham sua conexão de internet acabaram de \
        entrar nesta sala de espera, e cada conexão só pode entrar de tempos em tempos. Esta \
        página tenta de novo sozinha em {s} segundos; você não perde nada do que já tem.",
    invite_required_title: "Esta sala de espera é só para convidados",
    invite_required_message: "Só visitantes com convite podem entrar nesta fila. Abra o link do \
        seu convite para entrar.",
    invite_used_title: "Este convite já foi usado",
    invite_used_message: "Cada convite deixa um visitante entrar na fila uma única vez, e este \
        já foi usado. Se era seu, volte para a janela em que você entrou.",
    closed_title: "Esta sala de espera está fechada",
    closed_message: "Ela não está aceitando ninguém novo no momento. Se você já tinha um lugar \
        na fila, abra a página em que entrou.",
    challenge_failed_title: "Não conseguimos verificar seu navegador",
    challenge_failed_message: "A resposta do seu navegador à verificação da sala de espera não \
        foi aceita. Carregue esta página de novo para tentar outra vez.",
};
