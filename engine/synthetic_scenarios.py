"""Provides the Korean material the synthetic generator draws from: particle agreement (은/는, 이/가…)
and the scenarios (topic, slots, turn and summary templates, optional exchanges, small talk).

Data more than logic, kept apart from ``engine/synthetic.py`` so the generator reads on its own.
"""

from __future__ import annotations

from dataclasses import dataclass

# --- Korean particles ---------------------------------------------------------------------------

# How a masked token is read aloud decides its particle (#Person1# "원" takes 은, #Person2# "투" takes 는),
# matching the real summaries ("#Person1#은", "#Person2#는").
_MASK_READINGS = {"#Person1#": "원", "#Person2#": "투", "#Person3#": "쓰리", "#Person4#": "포", "#Person5#": "파이브",
                  "#Person6#": "식스", "#Person7#": "세븐", "#PhoneNumber#": "번호", "#Address#": "주소",
                  "#Email#": "이메일", "#CardNumber#": "번호", "#CarNumber#": "번호", "#PassportNumber#": "번호",
                  "#DateOfBirth#": "생년월일", "#SSN#": "번호"}
_PARTICLES = (("은", "는"), ("이", "가"), ("을", "를"), ("과", "와"), ("으로", "로"), ("이나", "나"))


def _final_consonant(word: str) -> int:
    """Index of the final consonant (jongseong) of the last syllable; 0 = none."""
    for mask, reading in _MASK_READINGS.items():
        if word.endswith(mask):
            word = reading
            break
    last = word.rstrip()[-1:] or "가"
    if "가" <= last <= "힣":
        return (ord(last) - 0xAC00) % 28
    # Digits read in Sino-Korean: 1 일, 3 삼, 6 육, 7 칠, 8 팔, 0 영 end in a consonant.
    return 1 if last in "013678" else 0


def particle(word: str, spec: str) -> str:
    """Return ``word`` followed by the right form of the particle ``spec`` (은/는, 이/가, 을/를, ...)."""
    for with_final, without in _PARTICLES:
        if spec in (with_final, without):
            jong = _final_consonant(word)
            # ㄹ (index 8) takes 로 like a vowel does.
            if with_final == "으로":
                return word + ("로" if jong in (0, 8) else "으로")
            return word + (with_final if jong else without)
    raise ValueError(f"unknown particle {spec!r}")


class Word(str):
    """A slot value whose format spec is a particle: ``"{place:에서}"`` stays, ``"{item:을}"`` picks 을/를."""

    def __format__(self, spec: str) -> str:
        if not spec:
            return str(self)
        if any(spec in pair for pair in _PARTICLES):
            return particle(str(self), spec)
        return str(self) + spec


# --- scenarios ----------------------------------------------------------------------------------

WHEN = ("내일 오전 열 시", "내일 오후 세 시", "토요일 아침", "일요일 오후", "다음 주 월요일", "금요일 저녁 일곱 시",
        "오늘 저녁", "수요일 점심", "이번 주말", "목요일 오전")


@dataclass(frozen=True)
class Extra:
    """An optional exchange: its turns (speaker, template) and the summary sentence it adds."""

    turns: tuple[tuple[int, str], ...]
    summary: str


@dataclass(frozen=True)
class Scenario:
    """One kind of conversation. Turn speaker 1 is #Person1#, 2 is #Person2#."""

    topics: tuple[str, ...]
    slots: dict[str, tuple[str, ...]]
    turns: tuple[tuple[int, str], ...]
    summaries: tuple[str, ...]  # [0] is the training summary; all are references for scoring
    extras: tuple[Extra, ...] = ()


SCENARIOS: tuple[Scenario, ...] = (
    Scenario(
        topics=("호텔 방 예약", "호텔 예약"),
        slots={"room": ("싱글룸", "더블룸", "스위트룸", "트윈룸"), "nights": ("하루", "이틀", "사흘"), "when": WHEN},
        turns=((2, "안녕하세요, 그랜드 호텔입니다. 무엇을 도와드릴까요?"),
               (1, "{when}부터 {nights} 동안 {room:을} 예약하고 싶어요."),
               (2, "{when}부터 {nights} 말씀이시죠? {room:이} 하나 남아 있습니다."),
               (1, "좋아요. 그걸로 할게요."),
               (2, "연락처를 알려 주시겠어요?"),
               (1, "제 번호는 #PhoneNumber#입니다.")),
        summaries=("#Person1#은 {when}부터 {nights} 동안 {room:을} 예약하고 연락처로 #PhoneNumber#를 남깁니다.",
                   "#Person1#은 호텔에 전화해 {when}부터 {nights} 묵을 {room:을} 예약합니다.",
                   "#Person2#는 #Person1#의 {room} 예약을 {when}부터 {nights} 동안으로 잡아 줍니다."),
        extras=(Extra(((1, "조식도 포함인가요?"), (2, "네, 조식은 아침 일곱 시부터 포함입니다.")),
                      "#Person2#는 조식이 포함되어 있다고 알려 줍니다."),
                Extra(((1, "주차도 할 수 있나요? 차 번호는 #CarNumber#예요."), (2, "네, 지하 주차장을 쓰시면 됩니다.")),
                      "#Person1#은 차량 #CarNumber#의 주차를 부탁합니다.")),
    ),
    Scenario(
        topics=("식당 예약", "저녁 식사 예약"),
        slots={"people": ("두 명", "세 명", "네 명", "다섯 명"), "place": ("한식당", "이탈리아 식당", "중식당", "일식집"),
               "seat": ("창가 자리", "룸", "테라스 자리"), "when": WHEN},
        turns=((1, "안녕하세요, {place:이}죠? 예약하려고 전화했어요."),
               (2, "네, 몇 분이신가요?"),
               (1, "{people:이}요. {when:으로} 부탁드려요."),
               (2, "{when}에 {people} 가능합니다. 원하시는 자리가 있나요?"),
               (1, "{seat:으로} 해 주세요."),
               (2, "네, {seat:으로} 예약해 두겠습니다.")),
        summaries=("#Person1#은 {place:에} 전화해 {when}에 {people}의 {seat:을} 예약합니다.",
                   "#Person1#은 {when} {place} {seat:을} {people} 자리로 예약합니다.",
                   "#Person2#는 #Person1#의 {people} {seat} 예약을 {when:으로} 받아 줍니다."),
        extras=(Extra(((1, "혹시 주차장이 있나요?"), (2, "건물 뒤에 주차장이 있습니다.")),
                      "#Person2#는 건물 뒤에 주차장이 있다고 알려 줍니다."),
                Extra(((2, "예약 확인 문자를 보낼 번호를 알려 주세요."), (1, "#PhoneNumber#로 보내 주세요.")),
                      "#Person1#은 확인 문자를 받을 번호로 #PhoneNumber#를 알려 줍니다.")),
    ),
    Scenario(
        topics=("의사 상담", "병원 진료"),
        slots={"symptom": ("두통", "기침", "복통", "허리 통증", "열"), "since": ("사흘 전", "일주일 전", "어제", "지난 주말"),
               "medicine": ("진통제", "기침약", "소화제", "해열제")},
        turns=((2, "어디가 불편해서 오셨어요?"),
               (1, "{since}부터 {symptom:이} 심해요."),
               (2, "{symptom:이} {since}부터 계속됐군요. 생년월일을 말씀해 주세요."),
               (1, "#DateOfBirth#입니다."),
               (2, "검사해 보니 큰 문제는 없네요. {medicine:을} 드릴게요."),
               (1, "{medicine:은} 하루에 몇 번 먹어야 하나요?"),
               (2, "하루 세 번 식후에 드세요.")),
        summaries=("#Person1#은 {since}부터 {symptom:이} 심해 진료를 받고 #Person2#는 {medicine:을} 처방합니다.",
                   "#Person2#는 {since}부터 {symptom:이} 있는 #Person1#에게 {medicine:을} 하루 세 번 먹으라고 합니다.",
                   "#Person1#은 {symptom} 때문에 병원에 가고 {medicine:을} 받습니다."),
        extras=(Extra(((2, "물을 많이 드시고 푹 쉬세요."), (1, "네, 그렇게 할게요.")),
                      "#Person2#는 물을 많이 마시고 쉬라고 조언합니다."),
                Extra(((2, "일주일 뒤에 다시 오세요."), (1, "다음 주에 다시 올게요.")),
                      "#Person1#은 일주일 뒤에 다시 오기로 합니다.")),
    ),
    Scenario(
        topics=("쇼핑", "옷 구매", "물건 구매"),
        slots={"item": ("운동화", "가방", "셔츠", "모자", "코트"), "color": ("검은색", "흰색", "파란색", "빨간색"),
               "price": ("삼만 원", "오만 원", "칠만 원", "십만 원")},
        turns=((2, "어서 오세요. 찾으시는 게 있나요?"),
               (1, "{item:을} 보고 있어요. {color}도 있나요?"),
               (2, "네, {color} {item:이} 있습니다. 가격은 {price}입니다."),
               (1, "{price}면 괜찮네요. 이걸로 살게요."),
               (2, "결제는 어떻게 하시겠어요?"),
               (1, "카드로 할게요. 카드 번호는 #CardNumber#예요.")),
        summaries=("#Person1#은 {color} {item:을} {price:에} 사고 카드로 결제합니다.",
                   "#Person1#은 가게에서 {price}짜리 {color} {item:을} 카드로 삽니다.",
                   "#Person2#는 #Person1#에게 {color} {item:을} {price:에} 팝니다."),
        extras=(Extra(((1, "교환도 되나요?"), (2, "일주일 안에 영수증을 가져오시면 됩니다.")),
                      "#Person2#는 일주일 안에 영수증이 있으면 교환할 수 있다고 말합니다."),
                Extra(((2, "회원이시면 할인이 됩니다."), (1, "아쉽지만 회원은 아니에요.")),
                      "#Person1#은 회원이 아니어서 할인을 받지 못합니다.")),
    ),
    Scenario(
        topics=("길 안내", "길 찾기"),
        slots={"dest": ("시청", "기차역", "도서관", "박물관", "우체국"), "landmark": ("은행", "편의점", "공원", "약국"),
               "transport": ("버스", "지하철", "택시")},
        turns=((1, "실례합니다. {dest:에} 어떻게 가나요?"),
               (2, "{dest:은} 여기서 좀 멀어요. {transport:을} 타는 게 좋아요."),
               (1, "{transport:을} 타면 얼마나 걸리나요?"),
               (2, "이십 분쯤 걸려요. {landmark} 앞에서 내리세요."),
               (1, "{landmark} 앞에서 내리면 되는군요. 고맙습니다.")),
        summaries=("#Person1#은 {dest:에} 가는 길을 묻고 #Person2#는 {transport:을} 타고 {landmark} 앞에서 내리라고 알려 줍니다.",
                   "#Person2#는 #Person1#에게 {dest:은} {transport:으로} 이십 분쯤 걸린다고 알려 줍니다.",
                   "#Person1#은 {transport:을} 타고 {landmark} 앞에서 내려 {dest:에} 가기로 합니다."),
        extras=(Extra(((1, "걸어서 가면요?"), (2, "걸어가면 한 시간은 걸려요.")),
                      "#Person2#는 걸어가면 한 시간이 걸린다고 말합니다."),),
    ),
    Scenario(
        topics=("항공권 예약", "여행 준비"),
        slots={"city": ("제주", "부산", "도쿄", "방콕", "파리"), "seat": ("일반석", "비즈니스석"), "when": WHEN},
        turns=((1, "{city}행 비행기표를 사고 싶어요."),
               (2, "언제 출발하실 건가요?"),
               (1, "{when:에} 출발하고 싶어요."),
               (2, "{when:에} {city:으로} 가는 {seat:이} 있습니다."),
               (1, "{seat:으로} 한 장 주세요."),
               (2, "여권 번호를 알려 주세요."),
               (1, "#PassportNumber#입니다.")),
        summaries=("#Person1#은 {when:에} 출발하는 {city}행 {seat} 표를 예약합니다.",
                   "#Person2#는 #Person1#에게 {when} {city}행 {seat:을} 판매합니다.",
                   "#Person1#은 여권 번호 #PassportNumber#로 {city}행 {seat:을} 삽니다."),
        extras=(Extra(((1, "짐은 몇 개까지 부칠 수 있나요?"), (2, "두 개까지 무료입니다.")),
                      "#Person2#는 짐을 두 개까지 무료로 부칠 수 있다고 합니다."),
                Extra(((2, "창가 좌석을 원하시나요?"), (1, "네, 창가로 해 주세요.")),
                      "#Person1#은 창가 좌석을 고릅니다.")),
    ),
    Scenario(
        topics=("은행 계좌 개설", "은행 업무"),
        slots={"account": ("적금 통장", "입출금 통장", "외화 통장"), "amount": ("십만 원", "오십만 원", "백만 원")},
        turns=((2, "무엇을 도와드릴까요?"),
               (1, "{account:을} 만들고 싶어요."),
               (2, "신분 확인을 위해 주민등록번호를 알려 주세요."),
               (1, "#SSN#입니다. 주소는 #Address#예요."),
               (2, "처음에 얼마를 넣으시겠어요?"),
               (1, "{amount:을} 넣을게요.")),
        summaries=("#Person1#은 은행에서 {account:을} 만들고 {amount:을} 넣습니다.",
                   "#Person2#는 #Person1#의 신분을 확인하고 {account:을} 만들어 줍니다.",
                   "#Person1#은 {amount:으로} {account:을} 새로 엽니다."),
        extras=(Extra(((1, "인터넷 뱅킹도 신청할 수 있나요?"), (2, "네, 같이 신청해 드릴게요.")),
                      "#Person1#은 인터넷 뱅킹도 함께 신청합니다."),),
    ),
    Scenario(
        topics=("주말 계획", "친구와 약속", "약속 잡기"),
        slots={"activity": ("영화", "등산", "전시회", "콘서트", "축구"), "place": ("시내", "공원", "극장", "체육관"),
               "when": WHEN},
        turns=((1, "{when:에} 같이 {activity} 보러 갈래?"),
               (2, "좋아. 어디서 만날까?"),
               (1, "{place:에서} 만나자."),
               (2, "{when:에} {place:에서} 보자. 늦지 마."),
               (1, "알았어. 기대된다.")),
        summaries=("#Person1#과 #Person2#는 {when:에} {place:에서} 만나 {activity:을} 보기로 합니다.",
                   "#Person1#은 #Person2#에게 {when} {activity:을} 제안하고 둘은 {place:에서} 만나기로 합니다.",
                   "#Person2#는 #Person1#과 {when:에} {activity:을} 보러 가기로 합니다."),
        extras=(Extra(((2, "끝나고 저녁도 먹자."), (1, "좋아, 내가 살게.")),
                      "#Person1#은 끝나고 저녁을 사기로 합니다."),
                Extra(((1, "혹시 늦으면 문자 보내 줘."), (2, "응, #PhoneNumber#로 보낼게.")),
                      "#Person2#는 늦으면 문자를 보내기로 합니다.")),
    ),
    Scenario(
        topics=("면접", "취업 면접"),
        slots={"job": ("디자이너", "개발자", "회계사", "영업 사원"), "years": ("이 년", "삼 년", "오 년"),
               "skill": ("팀워크", "꼼꼼함", "외국어 실력", "발표 능력")},
        turns=((2, "어떤 자리에 지원하셨나요?"),
               (1, "{job} 자리에 지원했습니다."),
               (2, "경력이 어떻게 되시나요?"),
               (1, "{job:으로} {years} 일했습니다."),
               (2, "본인의 장점은 무엇인가요?"),
               (1, "제 장점은 {skill}입니다."),
               (2, "결과는 #Email#로 알려 드리겠습니다.")),
        summaries=("#Person1#은 {job} 면접에서 {years} 경력과 장점인 {skill:을} 이야기합니다.",
                   "#Person2#는 {job:에} 지원한 #Person1#을 면접하고 결과를 이메일로 알려 주기로 합니다.",
                   "#Person1#은 {years} 경력의 {job:으로} 면접을 보고 {skill:을} 강조합니다."),
        extras=(Extra(((2, "언제부터 일할 수 있나요?"), (1, "다음 달부터 가능합니다.")),
                      "#Person1#은 다음 달부터 일할 수 있다고 합니다."),),
    ),
    Scenario(
        topics=("수리 요청", "집 수리"),
        slots={"broken": ("에어컨", "세탁기", "냉장고", "보일러"), "when": WHEN},
        turns=((1, "{broken:이} 고장 나서 수리를 부탁드리려고요."),
               (2, "어떤 문제가 있나요?"),
               (1, "{broken:이} 갑자기 작동하지 않아요."),
               (2, "기사님이 {when:에} 방문할 수 있습니다. 주소를 알려 주세요."),
               (1, "#Address#입니다. {when} 괜찮아요.")),
        summaries=("#Person1#은 고장 난 {broken} 수리를 요청하고 기사가 {when:에} 방문하기로 합니다.",
                   "#Person2#는 #Person1#의 {broken:을} 고치러 {when:에} 기사를 보내기로 합니다.",
                   "#Person1#의 {broken:이} 작동하지 않아 {when:에} 수리 기사가 옵니다."),
        extras=(Extra(((1, "수리비는 얼마나 나올까요?"), (2, "보증 기간이라 무료입니다.")),
                      "#Person2#는 보증 기간이라 수리비가 무료라고 합니다."),),
    ),
)

# Small talk that carries no summary content; it lengthens dialogues without changing the target.
FILLERS: tuple[tuple[str, str], ...] = (
    ("요즘 날씨가 많이 춥네요.", "그러게요. 감기 조심하세요."),
    ("잠시만요, 메모 좀 할게요.", "네, 천천히 하세요."),
    ("오늘 정말 바쁘시겠어요.", "네, 아침부터 정신이 없네요."),
    ("제 말이 잘 들리세요?", "네, 잘 들려요."),
    ("혹시 시간 괜찮으세요?", "네, 괜찮아요. 말씀하세요."),
    ("다시 한 번 말씀해 주시겠어요?", "네, 천천히 다시 말씀드릴게요."),
    ("오래 기다리셨죠?", "아니에요, 방금 왔어요."),
    ("이런 건 처음이라 잘 모르겠어요.", "걱정 마세요. 제가 도와드릴게요."),
)
# Exchanges that fit any scenario; long competition-profile dialogues draw on them so that long
# dialogues get long summaries (the real summary tail reaches ~160 tokens).
GENERIC_EXTRAS: tuple[Extra, ...] = (
    Extra(((2, "혹시 문제가 생기면 #PhoneNumber#로 연락 주세요."), (1, "네, 문제가 생기면 바로 연락할게요.")),
          "#Person2#는 문제가 생기면 #PhoneNumber#로 연락하라고 합니다."),
    Extra(((1, "자세한 내용은 이메일로 받을 수 있을까요?"), (2, "네, #Email#로 보내 드릴게요.")),
          "#Person2#는 자세한 내용을 #Email#로 보내 주기로 합니다."),
    Extra(((2, "다른 궁금한 점은 없으세요?"), (1, "하나 더 있어요. 취소는 언제까지 할 수 있나요?"),
           (2, "하루 전까지는 언제든지 취소할 수 있습니다.")),
          "#Person2#는 하루 전까지 취소할 수 있다고 알려 줍니다."),
    Extra(((1, "친구에게도 이걸 추천하고 싶어요."), (2, "감사합니다. 친구분도 할인해 드릴게요.")),
          "#Person2#는 #Person1#의 친구에게도 할인을 해 주겠다고 합니다."),
    Extra(((2, "오늘 일은 제가 기록해 두겠습니다."), (1, "고마워요. 나중에 확인해 볼게요.")),
          "#Person2#는 오늘 내용을 기록해 두기로 합니다."),
)
# What extra speakers (#Person3#...) say; the summary names them so they are not noise.
BYSTANDER_TURN = "저도 그 생각에 찬성이에요."
