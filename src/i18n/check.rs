//! What the check pages say (the proof of work's and the siteverify widget's), in each
//! language. The page's script takes these from the page (its data-text) as it goes.
//!
//! Placeholder: `{s}` seconds.

use serde::Serialize;

#[derive(Debug, Serialize)]
pub struct CheckText {
    pub pow_title: &'static str,
    pub pow_intro: &'static str,
    pub pow_noscript: &'static str,
    pub pow_progress_label: &'static str,
    pub starting: &'static str,
    pub checking_browser: &'static str,
    pub pow_done: &'static str,
    /// `{s}`: seconds until it tries again.
    pub network_busy: &'static str,
    pub went_wrong: &'static str,
    pub unreachable: &'static str,
    pub widget_title: &'static str,
    pub widget_intro: &'static str,
    pub widget_noscript: &'static str,
    pub widget_loading: &'static str,
    pub widget_checking: &'static str,
    pub widget_done: &'static str,
    pub widget_unconfirmed: &'static str,
    pub widget_failed: &'static str,
    pub widget_connection: &'static str,
    pub widget_load_failed: &'static str,
    pub widget_expired: &'static str,
}

pub const EN: CheckText = CheckText {
    pow_title: "One moment before you join the line",
    pow_intro: "This site is busy. Before you take a place in line, your browser does a short \
        piece of work that shows it is a person's browser and not a program taking many places. \
        It takes a few seconds and needs nothing from you.",
    pow_noscript: "This waiting room needs JavaScript to let you join the line. Turn JavaScript \
        on and load this page again.",
    pow_progress_label: "Checking your browser",
    starting: "Starting…",
    checking_browser: "Checking your browser…",
    pow_done: "Done. Taking your place in line…",
    network_busy: "Many people on your network are joining just now. Trying again in {s} s.",
    went_wrong: "Something went wrong. Trying again.",
    unreachable: "The waiting room cannot be reached. Trying again.",
    widget_title: "A quick check before you join the line",
    widget_intro: "This site is busy. To keep places in line for people, please complete the \
        check below; you will then get your place and see how long the wait is.",
    widget_noscript: "The check needs JavaScript. Please turn it on and load this page again.",
    widget_loading: "Loading the check…",
    widget_checking: "Checking…",
    widget_done: "Done: taking you to your place in line…",
    widget_unconfirmed: "The check cannot be confirmed right now; trying again in a moment…",
    widget_failed: "The check did not pass. Please try it again.",
    widget_connection: "The connection failed; trying again in a moment…",
    widget_load_failed: "The check could not load. Please reload the page.",
    widget_expired: "The check expired. Please complete it again.",
};

pub const KO: CheckText = CheckText {
    pow_title: "대기열에 들어가기 전에 잠시만요",
    pow_intro: "지금 이 사이트에 접속자가 많습니다. 대기열에 자리를 잡기 전에, 브라우저가 여러 \
        자리를 차지하려는 프로그램이 아니라 사람의 브라우저임을 보여 주는 짧은 작업을 합니다. 몇 초면 \
        끝나며 따로 하실 일은 없습니다.",
    pow_noscript: "이 대기실에 들어가려면 JavaScript가 필요합니다. JavaScript를 켜고 이 페이지를 \
        다시 여세요.",
    pow_progress_label: "브라우저 확인 중",
    starting: "시작하는 중…",
    checking_browser: "브라우저를 확인하는 중…",
    pow_done: "완료. 대기열에 자리를 잡는 중…",
    network_busy: "같은 네트워크에서 지금 많은 사람이 들어오고 있습니다. {s}초 후 다시 시도합니다.",
    went_wrong: "문제가 생겼습니다. 다시 시도합니다.",
    unreachable: "대기실에 연결할 수 없습니다. 다시 시도합니다.",
    widget_title: "대기열에 들어가기 전 간단한 확인",
    widget_intro: "지금 이 사이트에 접속자가 많습니다. 사람을 위한 자리를 지키기 위해 아래 확인을 \
        완료해 주세요. 그러면 자리를 받고 대기 시간을 볼 수 있습니다.",
    widget_noscript: "확인에는 JavaScript가 필요합니다. JavaScript를 켜고 이 페이지를 다시 여세요.",
    widget_loading: "확인을 불러오는 중…",
    widget_checking: "확인하는 중…",
    widget_done: "완료: 대기열의 내 자리로 이동하는 중…",
    widget_unconfirmed: "지금은 확인할 수 없습니다. 잠시 후 다시 시도합니다…",
    widget_failed: "확인을 통과하지 못했습니다. 다시 시도해 주세요.",
    widget_connection: "연결에 실패했습니다. 잠시 후 다시 시도합니다…",
    widget_load_failed: "확인을 불러오지 못했습니다. 페이지를 새로고침해 주세요.",
    widget_expired: "확인이 만료되었습니다. 다시 완료해 주세요.",
};

pub const JA: CheckText = CheckText {
    pow_title: "列に並ぶ前に少々お待ちください",
    pow_intro: "ただいまこのサイトは混み合っています。列に並ぶ前に、多くの順番を取ろうとする\
        プログラムではなく人のブラウザであることを示す短い処理をブラウザが行います。数秒で終わり、\
        操作は不要です。",
    pow_noscript:
        "この待合室に並ぶには JavaScript が必要です。JavaScript を有効にして、このページを\
        もう一度読み込んでください。",
    pow_progress_label: "ブラウザを確認しています",
    starting: "開始しています…",
    checking_browser: "ブラウザを確認しています…",
    pow_done: "完了しました。列に並んでいます…",
    network_busy: "同じネットワークから多くの方が並んでいます。{s} 秒後に再試行します。",
    went_wrong: "問題が発生しました。再試行します。",
    unreachable: "待合室に接続できません。再試行します。",
    widget_title: "列に並ぶ前の簡単な確認",
    widget_intro:
        "ただいまこのサイトは混み合っています。人のための順番を守るため、下の確認を完了して\
        ください。順番を受け取り、待ち時間を確認できます。",
    widget_noscript:
        "確認には JavaScript が必要です。有効にして、このページをもう一度読み込んでください。",
    widget_loading: "確認を読み込んでいます…",
    widget_checking: "確認しています…",
    widget_done: "完了：列のあなたの順番へ移動しています…",
    widget_unconfirmed: "現在確認できません。まもなく再試行します…",
    widget_failed: "確認に合格しませんでした。もう一度お試しください。",
    widget_connection: "接続に失敗しました。まもなく再試行します…",
    widget_load_failed: "確認を読み込めませんでした。ページを再読み込みしてください。",
    widget_expired: "確認の有効期限が切れました。もう一度完了してください。",
};

pub const ZH_HANS: CheckText = CheckText {
    pow_title: "排队前请稍候",
    pow_intro:
        "本网站目前访问人数较多。在您排队之前，浏览器会进行一项简短的运算，证明它是真人使用的\
        浏览器，而不是抢占大量位置的程序。只需几秒钟，您无需任何操作。",
    pow_noscript: "此等候室需要 JavaScript 才能让您排队。请开启 JavaScript 并重新加载此页面。",
    pow_progress_label: "正在验证您的浏览器",
    starting: "正在开始…",
    checking_browser: "正在验证您的浏览器…",
    pow_done: "完成。正在为您排队…",
    network_busy: "您所在网络中有许多人正在加入。将在 {s} 秒后重试。",
    went_wrong: "出现问题，正在重试。",
    unreachable: "无法连接到等候室，正在重试。",
    widget_title: "排队前的快速验证",
    widget_intro:
        "本网站目前访问人数较多。为了把位置留给真人，请完成下方的验证；之后您将获得位置并\
        看到等待时间。",
    widget_noscript: "验证需要 JavaScript。请开启后重新加载此页面。",
    widget_loading: "正在加载验证…",
    widget_checking: "正在验证…",
    widget_done: "完成：正在带您前往您的排队位置…",
    widget_unconfirmed: "暂时无法确认验证结果，稍后重试…",
    widget_failed: "验证未通过，请再试一次。",
    widget_connection: "连接失败，稍后重试…",
    widget_load_failed: "验证无法加载，请重新加载页面。",
    widget_expired: "验证已过期，请重新完成。",
};

pub const ZH_HANT: CheckText = CheckText {
    pow_title: "排隊前請稍候",
    pow_intro: "本網站目前人潮眾多。在您排隊之前，瀏覽器會進行一項簡短的運算，證明它是真人使用的\
        瀏覽器，而不是搶占大量位置的程式。只需幾秒鐘，您無須任何操作。",
    pow_noscript: "此等候室需要 JavaScript 才能讓您排隊。請開啟 JavaScript 並重新載入此頁面。",
    pow_progress_label: "正在驗證您的瀏覽器",
    starting: "正在開始…",
    checking_browser: "正在驗證您的瀏覽器…",
    pow_done: "完成。正在為您排隊…",
    network_busy: "您所在網路中有許多人正在加入。將在 {s} 秒後重試。",
    went_wrong: "發生問題，正在重試。",
    unreachable: "無法連線到等候室，正在重試。",
    widget_title: "排隊前的快速驗證",
    widget_intro: "本網站目前人潮眾多。為了把位置留給真人，請完成下方的驗證；之後您將取得位置並\
        看到等候時間。",
    widget_noscript: "驗證需要 JavaScript。請開啟後重新載入此頁面。",
    widget_loading: "正在載入驗證…",
    widget_checking: "正在驗證…",
    widget_done: "完成：正在帶您前往您的排隊位置…",
    widget_unconfirmed: "暫時無法確認驗證結果，稍後重試…",
    widget_failed: "驗證未通過，請再試一次。",
    widget_connection: "連線失敗，稍後重試…",
    widget_load_failed: "驗證無法載入，請重新載入頁面。",
    widget_expired: "驗證已過期，請重新完成。",
};

pub const ES: CheckText = CheckText {
    pow_title: "Un momento antes de entrar en la fila",
    pow_intro: "Este sitio está muy solicitado. Antes de darte un lugar en la fila, tu navegador \
        hace un breve trabajo que demuestra que es el navegador de una persona y no un programa \
        que acapara lugares. Tarda unos segundos y no tienes que hacer nada.",
    pow_noscript: "Esta sala de espera necesita JavaScript para que entres en la fila. Activa \
        JavaScript y vuelve a cargar esta página.",
    pow_progress_label: "Comprobando tu navegador",
    starting: "Empezando…",
    checking_browser: "Comprobando tu navegador…",
    pow_done: "Listo. Tomando tu lugar en la fila…",
    network_busy:
        "Mucha gente de tu red está entrando ahora mismo. Lo intentamos de nuevo en {s} s.",
    went_wrong: "Algo ha fallado. Lo intentamos de nuevo.",
    unreachable: "No se puede acceder a la sala de espera. Lo intentamos de nuevo.",
    widget_title: "Una comprobación rápida antes de entrar en la fila",
    widget_intro: "Este sitio está muy solicitado. Para reservar los lugares de la fila a \
        personas, completa la comprobación de abajo; después tendrás tu lugar y verás cuánto \
        hay que esperar.",
    widget_noscript: "La comprobación necesita JavaScript. Actívalo y vuelve a cargar esta página.",
    widget_loading: "Cargando la comprobación…",
    widget_checking: "Comprobando…",
    widget_done: "Listo: te llevamos a tu lugar en la fila…",
    widget_unconfirmed: "Ahora no se puede confirmar la comprobación; lo intentamos de nuevo en \
        un momento…",
    widget_failed: "No has superado la comprobación. Inténtalo de nuevo.",
    widget_connection: "Ha fallado la conexión; lo intentamos de nuevo en un momento…",
    widget_load_failed: "No se pudo cargar la comprobación. Vuelve a cargar la página.",
    widget_expired: "La comprobación ha caducado. Complétala de nuevo.",
};

pub const FR: CheckText = CheckText {
    pow_title: "Un instant avant de rejoindre la file",
    pow_intro: "Ce site est très demandé. Avant de vous donner une place dans la file, votre \
        navigateur effectue un court travail qui montre qu’il est celui d’une personne et non \
        un programme qui prend de nombreuses places. Cela prend quelques secondes et ne vous \
        demande rien.",
    pow_noscript: "Cette salle d’attente a besoin de JavaScript pour vous faire rejoindre la \
        file. Activez JavaScript et rechargez cette page.",
    pow_progress_label: "Vérification de votre navigateur",
    starting: "Démarrage…",
    checking_browser: "Vérification de votre navigateur…",
    pow_done: "Terminé. Nous prenons votre place dans la file…",
    network_busy: "Beaucoup de personnes de votre réseau arrivent en ce moment. Nouvel essai \
        dans {s} s.",
    went_wrong: "Un problème est survenu. Nouvel essai.",
    unreachable: "La salle d’attente est injoignable. Nouvel essai.",
    widget_title: "Une vérification rapide avant de rejoindre la file",
    widget_intro: "Ce site est très demandé. Pour garder les places de la file aux personnes, \
        effectuez la vérification ci-dessous ; vous aurez ensuite votre place et verrez \
        l’attente.",
    widget_noscript: "La vérification a besoin de JavaScript. Activez-le et rechargez cette page.",
    widget_loading: "Chargement de la vérification…",
    widget_checking: "Vérification…",
    widget_done: "Terminé : nous vous menons à votre place dans la file…",
    widget_unconfirmed: "La vérification ne peut pas être confirmée pour l’instant ; nouvel \
        essai dans un instant…",
    widget_failed: "La vérification n’a pas réussi. Veuillez réessayer.",
    widget_connection: "La connexion a échoué ; nouvel essai dans un instant…",
    widget_load_failed: "La vérification n’a pas pu se charger. Rechargez la page.",
    widget_expired: "La vérification a expiré. Veuillez la refaire.",
};

pub const DE: CheckText = CheckText {
    pow_title: "Einen Moment, bevor Sie sich einreihen",
    pow_intro: "Diese Website ist gerade stark gefragt. Bevor Sie einen Platz in der \
        Warteschlange bekommen, erledigt Ihr Browser eine kurze Aufgabe, die zeigt, dass er der \
        Browser eines Menschen ist und kein Programm, das viele Plätze belegt. Das dauert ein \
        paar Sekunden, Sie müssen nichts tun.",
    pow_noscript: "Dieser Warteraum braucht JavaScript, um Sie einzureihen. Schalten Sie \
        JavaScript ein und laden Sie diese Seite neu.",
    pow_progress_label: "Ihr Browser wird geprüft",
    starting: "Wird gestartet…",
    checking_browser: "Ihr Browser wird geprüft…",
    pow_done: "Fertig. Ihr Platz in der Warteschlange wird reserviert…",
    network_busy: "Gerade reihen sich viele Menschen aus Ihrem Netz ein. Neuer Versuch in {s} s.",
    went_wrong: "Etwas ist schiefgegangen. Neuer Versuch.",
    unreachable: "Der Warteraum ist nicht erreichbar. Neuer Versuch.",
    widget_title: "Eine kurze Prüfung, bevor Sie sich einreihen",
    widget_intro: "Diese Website ist gerade stark gefragt. Damit die Plätze Menschen vorbehalten \
        bleiben, schließen Sie bitte die Prüfung unten ab; danach bekommen Sie Ihren Platz und \
        sehen die Wartezeit.",
    widget_noscript: "Die Prüfung braucht JavaScript. Bitte schalten Sie es ein und laden Sie \
        diese Seite neu.",
    widget_loading: "Die Prüfung wird geladen…",
    widget_checking: "Wird geprüft…",
    widget_done: "Fertig: Sie werden zu Ihrem Platz in der Warteschlange gebracht…",
    widget_unconfirmed: "Die Prüfung lässt sich gerade nicht bestätigen; gleich neuer Versuch…",
    widget_failed: "Die Prüfung war nicht erfolgreich. Bitte versuchen Sie es noch einmal.",
    widget_connection: "Die Verbindung ist fehlgeschlagen; gleich neuer Versuch…",
    widget_load_failed: "Die Prüfung konnte nicht geladen werden. Bitte laden Sie die Seite neu.",
    widget_expired: "Die Prüfung ist abgelaufen. Bitte schließen Sie sie erneut ab.",
};

pub const PT_BR: CheckText = CheckText {
    pow_title: "Um momento antes de entrar na fila",
    pow_intro: "Este site está muito movimentado. Antes de você pegar um lugar na fila, seu \
        navegador faz um trabalho rápido que mostra que ele é o navegador de uma pessoa, e não \
        um programa pegando muitos lugares. Leva alguns segundos e não exige nada de você.",
    pow_noscript: "Esta sala de espera precisa de JavaScript para colocar você na fila. Ative o \
        JavaScript e carregue esta página de novo.",
    pow_progress_label: "Verificando seu navegador",
    starting: "Começando…",
    checking_browser: "Verificando seu navegador…",
    pow_done: "Pronto. Pegando seu lugar na fila…",
    network_busy: "Muitas pessoas da sua rede estão entrando agora. Tentando de novo em {s} s.",
    went_wrong: "Algo deu errado. Tentando de novo.",
    unreachable: "Não foi possível acessar a sala de espera. Tentando de novo.",
    widget_title: "Uma verificação rápida antes de entrar na fila",
    widget_intro: "Este site está muito movimentado. Para guardar os lugares da fila para \
        pessoas, conclua a verificação abaixo; depois você recebe seu lugar e vê quanto tempo \
        vai esperar.",
    widget_noscript: "A verificação precisa de JavaScript. Ative-o e carregue esta página de novo.",
    widget_loading: "Carregando a verificação…",
    widget_checking: "Verificando…",
    widget_done: "Pronto: levando você ao seu lugar na fila…",
    widget_unconfirmed: "Não é possível confirmar a verificação agora; tentando de novo em \
        instantes…",
    widget_failed: "A verificação não passou. Tente de novo.",
    widget_connection: "A conexão falhou; tentando de novo em instantes…",
    widget_load_failed: "Não foi possível carregar a verificação. Recarregue a página.",
    widget_expired: "A verificação expirou. Conclua-a de novo.",
};
