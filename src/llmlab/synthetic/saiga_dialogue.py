"""The text of synthetic saiga dialogues: topics, prompts, worked answers, flagged replies.

`dialogue(...)` writes one conversation for `llmlab.synthetic.saiga.generate_saiga`, which
draws the row-level attributes (language, topic, turns, flags, reply lengths) it is given.
The phrase banks and topic contents are package data (`phrases/saiga.json`).
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import numpy as np

from llmlab.synthetic.common import load_phrases


class Topic:
    """Content for one judge topic: what users ask and what answers are made of.

    `subjects` are (Russian, English) pairs so a Mixed dialogue talks about one thing in two
    languages; Russian subjects are in the grammatical case the topic's prompts need.
    `subjects_uk` are (Ukrainian, English) pairs for the few topics with Ukrainian rows.
    Prompts and body sentences use `{s}` (subject) and `{S}` (capitalised subject).
    """

    def __init__(
        self,
        desc: str,
        weight: float,
        complexity: tuple[float, float, float],
        subjects: Sequence[tuple[str, str]] = (),
        prompts_ru: Sequence[str] = (),
        prompts_en: Sequence[str] = (),
        body_ru: Sequence[str] = (),
        body_en: Sequence[str] = (),
        subjects_uk: Sequence[tuple[str, str]] = (),
        score_shift: float = 0.0,
        length: float = 1.0,
        as_list: float = 0.2,
        style: str = "explain",
    ) -> None:
        self.desc = desc  # English verb phrase for sonnet_topic_explanation
        self.weight = weight
        self.complexity = complexity  # P(easy), P(medium), P(hard)
        self.subjects = tuple(subjects)
        self.prompts = {"ru": tuple(prompts_ru), "en": tuple(prompts_en)}
        self.body = {"ru": tuple(body_ru), "en": tuple(body_en)}
        self.subjects_uk = tuple(subjects_uk)
        self.score_shift = score_shift
        self.length = length  # factor on the bot reply length
        self.as_list = as_list  # P(a long answer is a numbered list)
        # "explain": opener, topic sentences, then generic advice, closer;
        # "creative": topic sentences only (a story has no "Good question!");
        # "task": the generated answer itself (a worked solution, a translation, ...).
        self.style = style


# Read here, so the stages importing this module depend on it (llmlab.stages).
PACKAGE_DATA = ("synthetic/phrases/saiga.json",)
_PHRASES = load_phrases("saiga")
# The judge topics in label order (the generator draws by position).
TOPICS: dict[str, Topic] = {name: Topic(**spec) for name, spec in _PHRASES["topics"].items()}

# Generic pieces per language: "ru", "en", "uk".
_OPENERS = _PHRASES["openers"]
_CLOSERS = _PHRASES["closers"]
_GENERIC_BODY = _PHRASES["generic_body"]
_HEADINGS = _PHRASES["headings"]
# Optional context before and constraint after a first prompt: real prompts vary this way,
# and it keeps templated prompts from repeating verbatim (the author deduplicates by
# 8-gram overlap of the first user messages).
_PROMPT_PREFIXES = _PHRASES["prompt_prefixes"]
_PROMPT_SUFFIXES = _PHRASES["prompt_suffixes"]
# Constraints that fit any task (an equation, a translation) rather than an explanation.
_TASK_SUFFIXES = _PHRASES["task_suffixes"]
_NEXT_TASK = _PHRASES["next_task"]
_PRESSURE = _PHRASES["pressure"]
_STAGE_DIRECTIONS = _PHRASES["stage_directions"]
_RP_GREETINGS = _PHRASES["rp_greetings"]
_USER_DIRECTIONS = _PHRASES["user_directions"]
# Prompt templates any explain-style topic can use (the subject stays in the nominative).
_GENERIC_PROMPTS = _PHRASES["generic_prompts"]
_UK_WRITING_PROMPTS = _PHRASES["uk_writing_prompts"]
_UK_CREATIVE = _PHRASES["uk_creative"]
_RP_OPENERS = _PHRASES["rp_openers"]
_UK_PROMPTS = _PHRASES["uk_prompts"]
_FOLLOWUPS = _PHRASES["followups"]
_FOLLOWUP_OPENERS = _PHRASES["followup_openers"]
_ASSISTANT_SYSTEMS = _PHRASES["assistant_systems"]
# Flagged bot text: self-references that keep the answer, and whole-message refusals.
_SELF_REFERENCES = _PHRASES["self_references"]
_REFUSALS = _PHRASES["refusals"]
# Refusals the phrase list misses (the regex flag is a heuristic, not the truth).
_HIDDEN_REFUSALS = _PHRASES["hidden_refusals"]
# Small talk openers are combined with a greeting and a tail, as people type them.
_CHIT_CHAT = _PHRASES["chit_chat"]
_CHIT_GREETINGS = _PHRASES["chit_greetings"]
_CHIT_TAILS = _PHRASES["chit_tails"]
_INAPPROPRIATE = _PHRASES["inappropriate"]
# Roleplay personas: system prompt, opening user lines, in-character replies.
_PERSONAS = _PHRASES["personas"]
_TRANSLATION_PAIRS = _PHRASES["translation_pairs"]
_LANGUAGE_QA = _PHRASES["language_qa"]
_CODE_TASKS = _PHRASES["code_tasks"]
_EXTRACT_PEOPLE = _PHRASES["extract_people"]
_EXTRACT_PEOPLE_EN = _PHRASES["extract_people_en"]
_EXTRACT_CITIES = _PHRASES["extract_cities"]
_EXTRACT_ORGS = _PHRASES["extract_orgs"]
_EXTRACT_ORGS_EN = _PHRASES["extract_orgs_en"]
_CITY_NOMINATIVE = _PHRASES["city_nominative"]
_INGREDIENTS = _PHRASES["ingredients"]
_RIDDLES = _PHRASES["riddles"]


def _fill(text: str, subject: str) -> str:
    if "{" not in text:
        return text
    return text.replace("{s}", subject).replace("{S}", subject[:1].upper() + subject[1:])


def _take(r: random.Random, pool: Sequence[str], k: int) -> list[str]:
    """`k` items of `pool` without repeats until the pool is used up, then reshuffled."""
    out: list[str] = []
    while len(out) < k and pool:
        batch = list(pool)
        r.shuffle(batch)
        out.extend(batch[: k - len(out)])
    return out


def _compose(
    r: random.Random,
    lang: str,
    topic: Topic,
    subject: str,
    target: int,
    head: str = "",
    openers: Sequence[str] | None = None,
) -> str:
    """A bot reply of about `target` characters: opener, `head`, body sentences, closer.

    Topic sentences come first, generic advice only pads long answers; sentences that name
    the subject are skipped when there is none.
    """
    if topic.style == "task":
        opener = r.choice(openers or _OPENERS[lang])
        closer = r.choice(_CLOSERS[lang]) if r.random() < 0.3 else ""
        return "\n\n".join(p for p in (opener, head, closer) if p)
    creative = topic.style == "creative"
    own = [x for x in topic.body.get(lang, ()) if subject or "{s" not in x]
    generic = () if creative else [x for x in _GENERIC_BODY[lang] if subject or "{s" not in x]
    if lang == "uk" and not own:
        own = list(_UK_CREATIVE) if creative else [x for x in generic if subject or "{s" not in x]
        generic = []
    k = max(1, (target - len(head)) // 75)  # ~75 characters per sentence in all languages
    sentences = _take(r, own, min(k, len(own)))
    if k > len(sentences):
        used = set(sentences)
        rest = [x for x in (*own, *generic) if x not in used] or [*own, *generic]
        sentences += _take(r, rest, k - len(sentences))
    parts = [head.strip()] if head else []
    as_list = not creative and (
        (target > 300 and r.random() < topic.as_list) or (target > 1500 and r.random() < 0.5)
    )
    i = 0
    if as_list:
        headings = _take(r, _HEADINGS[lang], len(_HEADINGS[lang]))
        items: list[str] = []
        while i < len(sentences):
            n = r.randint(1, 3)
            heading = headings[len(items) % len(headings)]
            items.append(f"{len(items) + 1}. **{heading}.** " + " ".join(sentences[i : i + n]))
            i += n
        parts.append("\n".join(items))
    else:
        while i < len(sentences):
            n = r.randint(2, 4)
            parts.append(" ".join(sentences[i : i + n]))
            i += n
    if not creative:
        opener = r.choice(openers or _OPENERS[lang])
        if opener and parts and not head and not as_list:
            parts[0] = f"{opener} {parts[0]}"
        elif opener:
            parts.insert(0, opener)
        closer = r.choice(_CLOSERS[lang])
        if closer:
            parts.append(closer)
    return _fill("\n\n".join(parts), subject)


def _math_task(r: random.Random, lu: str, lb: str) -> tuple[str, str]:
    """A generated problem in language `lu` and its worked, correct solution in `lb`."""
    kind = r.randrange(5)
    ru_q, ru_a = lu == "ru", lb == "ru"
    if kind == 0:
        a, x, b = r.randint(2, 9), r.randint(-10, 20), r.randint(1, 40)
        c = a * x + b
        q = f"Реши уравнение {a}x + {b} = {c}." if ru_q else f"Solve the equation {a}x + {b} = {c}."
        if ru_a:
            ans = (
                f"Перенесём {b} в правую часть: {a}x = {c} − {b} = {c - b}.\n"
                f"Разделим обе части на {a}: x = {c - b} / {a} = {x}.\n\n"
                f"Проверка: {a} · {x} + {b} = {c}.\n\n**Ответ:** x = {x}."
            )
        else:
            ans = (
                f"Move {b} to the right-hand side: {a}x = {c} - {b} = {c - b}.\n"
                f"Divide both sides by {a}: x = {c - b} / {a} = {x}.\n\n"
                f"Check: {a} · {x} + {b} = {c}.\n\n**Answer:** x = {x}."
            )
    elif kind == 1:
        p, n = r.choice((5, 10, 12, 15, 20, 25, 30, 40, 75)), r.randrange(40, 5000, 20)
        res = f"{p * n / 100:g}"
        q = f"Сколько будет {p}% от {n}?" if ru_q else f"What is {p}% of {n}?"
        ans = (
            f"Чтобы найти {p}% от числа, умножим его на {p} и разделим на 100:\n"
            f"{n} × {p} / 100 = {res}.\n\n**Ответ:** {res}."
            if ru_a
            else f"To find {p}% of a number, multiply by {p} and divide by 100:\n"
            f"{n} × {p} / 100 = {res}.\n\n**Answer:** {res}."
        )
    elif kind == 2:
        a, b = r.randint(20, 300), r.randint(10, 200)
        c = r.randint(5, a + b - 1)
        q = (
            f"В магазине было {a} кг яблок. Утром привезли ещё {b} кг, а за день продали {c} кг. "
            "Сколько килограммов яблок осталось?"
            if ru_q
            else f"A shop had {a} kg of apples. In the morning {b} kg more arrived, and {c} kg "
            "were sold during the day. How many kilograms are left?"
        )
        ans = (
            f"1) {a} + {b} = {a + b} кг — стало после поставки.\n"
            f"2) {a + b} − {c} = {a + b - c} кг — осталось.\n\n**Ответ:** {a + b - c} кг."
            if ru_a
            else f"1) {a} + {b} = {a + b} kg after the delivery.\n"
            f"2) {a + b} - {c} = {a + b - c} kg left.\n\n**Answer:** {a + b - c} kg."
        )
    elif kind == 3:
        a, n, b, c = r.randint(2, 9), r.randint(2, 5), r.randint(1, 12), r.randint(1, 20)
        power = "x" if n == 2 else f"x^{n - 1}"
        q = (
            f"Найди производную функции f(x) = {a}x^{n} + {b}x + {c}."
            if ru_q
            else f"Find the derivative of f(x) = {a}x^{n} + {b}x + {c}."
        )
        ans = (
            "Производная суммы равна сумме производных; (x^n)' = n·x^(n−1), производная "
            f"константы равна нулю.\n\nf'(x) = {a * n}{power} + {b}.\n\n"
            f"**Ответ:** f'(x) = {a * n}{power} + {b}."
            if ru_a
            else "The derivative of a sum is the sum of derivatives; (x^n)' = n·x^(n-1), and "
            f"a constant's derivative is zero.\n\nf'(x) = {a * n}{power} + {b}.\n\n"
            f"**Answer:** f'(x) = {a * n}{power} + {b}."
        )
    else:
        a, b = r.randint(2, 40), r.randint(2, 40)
        q = (
            f"Найди площадь и периметр прямоугольника со сторонами {a} см и {b} см."
            if ru_q
            else f"Find the area and perimeter of a {a} cm by {b} cm rectangle."
        )
        ans = (
            f"Площадь: S = {a} · {b} = {a * b} см².\nПериметр: P = 2 · ({a} + {b}) = "
            f"{2 * (a + b)} см.\n\n**Ответ:** {a * b} см², {2 * (a + b)} см."
            if ru_a
            else f"Area: S = {a} · {b} = {a * b} cm².\nPerimeter: P = 2 · ({a} + {b}) = "
            f"{2 * (a + b)} cm.\n\n**Answer:** {a * b} cm², {2 * (a + b)} cm."
        )
    return q, ans


def _reasoning_task(r: random.Random, lang: str) -> tuple[str, str]:
    ru = lang == "ru"
    kind = r.randrange(3)
    if kind == 0:
        h, t, v = r.randint(5, 14), r.randint(2, 9), r.randrange(40, 130, 5)
        q = (
            f"Поезд выехал в {h}:00 и шёл {t} ч со скоростью {v} км/ч. "
            + r.choice(
                (
                    "Сколько он проехал и когда прибыл?",
                    "Найди путь и время прибытия.",
                    "Какое расстояние он прошёл?",
                )
            )
            if ru
            else f"A train left at {h}:00 and travelled for {t} hours at {v} km/h. "
            "How far did it go and when did it arrive?"
        )
        a = (
            f"Рассуждаем по шагам.\n1) Расстояние = скорость × время = {v} × {t} = {v * t} км.\n"
            f"2) Время прибытия: {h}:00 + {t} ч = {(h + t) % 24}:00.\n\n"
            f"**Ответ:** {v * t} км, прибытие в {(h + t) % 24}:00."
            if ru
            else f"Step by step.\n1) Distance = speed × time = {v} × {t} = {v * t} km.\n"
            f"2) Arrival: {h}:00 + {t} h = {(h + t) % 24}:00.\n\n"
            f"**Answer:** {v * t} km, arriving at {(h + t) % 24}:00."
        )
    elif kind == 1:
        m, d, k = r.randint(5, 20), r.randint(2, 4), r.randint(5, 15)
        q = (
            f"{r.choice(('Маше', 'Кате', 'Лене', 'Оле', 'Ане'))} {m} лет. Брат старше на {d} года. "
            f"Сколько ему будет через {k} лет?"
            if ru
            else f"Masha is {m} and her brother is {d} years older. "
            f"How old will he be in {k} years?"
        )
        a = (
            f"Сейчас брату {m} + {d} = {m + d}. "
            f"Через {k} лет ему будет {m + d} + {k} = {m + d + k}.\n\n"
            f"**Ответ:** {m + d + k}."
            if ru
            else f"He is {m} + {d} = {m + d} now, so in {k} years he will be {m + d + k}.\n\n"
            f"**Answer:** {m + d + k}."
        )
    else:
        q, a = r.choice(_RIDDLES["ru" if ru else "en"])
    return q, a


def _extract_task(r: random.Random, lu: str, lb: str) -> tuple[str, str]:
    """A short biography with a name, two years, a city and a company, and the extraction."""
    i = r.randrange(len(_EXTRACT_PEOPLE))
    female = i % 2 == 0  # the name bank alternates female and male names
    city_prep, city_en = r.choice(_EXTRACT_CITIES)
    j = r.randrange(len(_EXTRACT_ORGS))
    y1 = r.randint(1960, 1995)
    y2 = y1 + r.randint(18, 25)
    if lu == "ru":
        born, grad, came = (
            ("родилась", "окончила", "пришла") if female else ("родился", "окончил", "пришёл")
        )
        text = (
            f"{_EXTRACT_PEOPLE[i]} {born} в {city_prep} в {y1} году. В {y2} году {grad} "
            f"университет. Потом {came} в {_EXTRACT_ORGS[j]}."
        )
        q = r.choice(
            (
                "Выдели имена, даты, города и организации:",
                "Найди в тексте все сущности.",
                "Извлеки из текста даты и имена.",
                "Какие имена и города тут есть?",
            )
        )
        q = f"{q}\n\n{text}"
    else:
        pron = "she" if female else "he"
        text = (
            f"{_EXTRACT_PEOPLE_EN[i]} was born in {city_en} in {y1}. In {y2} {pron} graduated "
            f"and then joined {_EXTRACT_ORGS_EN[j]}."
        )
        q = r.choice(
            (
                "Extract names, dates, cities and organisations:",
                "Find all entities here.",
                "List the names and dates in this text.",
            )
        )
        q = f"{q}\n\n{text}"
    if lb == "ru":
        a = (
            f"- Имена: {_EXTRACT_PEOPLE[i]}\n- Даты: {y1}, {y2}\n"
            f"- Города: {_CITY_NOMINATIVE[city_prep]}\n- Организации: {_EXTRACT_ORGS[j]}"
        )
    else:
        a = (
            f"- Names: {_EXTRACT_PEOPLE_EN[i]}\n- Dates: {y1}, {y2}\n- Cities: {city_en}\n"
            f"- Organisations: {_EXTRACT_ORGS_EN[j]}"
        )
    return q, a


def _decorate(
    r: random.Random, prompt: str, lang: str, suffixes: Sequence[str], p: float = 0.45
) -> str:
    """Add an optional context sentence before and a constraint after a prompt."""
    if r.random() < p:
        prompt = f"{r.choice(_PROMPT_PREFIXES[lang])} {prompt}"
    if r.random() < p:
        prompt = f"{prompt} {r.choice(suffixes)}"
    return prompt


def _task(r: random.Random, name: str, lu: str, lb: str) -> tuple[str, str]:
    """(question, answer) for the task topics: generated problems and paired exchanges."""
    if name == "math":
        return _math_task(r, lu, lb)
    if name == "reasoning":
        return _reasoning_task(r, lu)
    if name == "extract":
        return _extract_task(r, lu, lb)
    if name == "translation":
        ru, en = r.choice(_TRANSLATION_PAIRS)
        if lu == "ru":
            q = r.choice(
                (
                    "Переведи на английский: «{t}»",
                    "Как сказать по-английски: «{t}»?",
                    "Translate to English, please: {t}",
                )
            ).format(t=ru)
            return q, (f"Перевод: «{en}»" if lb == "ru" else f'Translation: "{en}"')
        q = r.choice(('Translate into Russian: "{t}"', "How do you say this in Russian: {t}"))
        return q.format(t=en), (f"In Russian: «{ru}»" if lb == "en" else f"По-русски: «{ru}»")
    if name == "languages":
        return r.choice(_LANGUAGE_QA[lu])
    if name == "chit_chat":
        q, a = r.choice(_CHIT_CHAT[lu])
        greeting = r.choice(_CHIT_GREETINGS[lu])
        q = f"{greeting} {q}" if greeting else q
        tail = r.choice(_CHIT_TAILS)
        return (q.rstrip(".!?") + tail if tail else q), a
    if name == "inappropriate":
        return r.choice(_INAPPROPRIATE[lu])
    raise ValueError(f"{name!r} is not a task topic")


def _first_turn(
    r: random.Random, name: str, topic: Topic, lu: str, lb: str
) -> tuple[str, str, str, str]:
    """(user prompt, answer head, subject in English, subject in the bot's language)."""
    if topic.style == "task":
        q, head = _task(r, name, lu, lb)
        if name != "chit_chat":
            q = _decorate(r, q, lu, _TASK_SUFFIXES[lu], p=0.65)
        return q, head, "", ""
    if name == "coding" and r.random() < 0.6:
        task_ru, task_en, code = r.choice(_CODE_TASKS)
        q = (
            r.choice(
                (
                    "Напиши функцию на Python, которая {t}.",
                    "Нужна функция на Python. Она {t}.",
                    "Как на Python сделать функцию, которая {t}?",
                )
            ).format(t=task_ru)
            if lu == "ru"
            else r.choice(
                ("Write a Python function that {t}.", "How do I write a Python function that {t}?")
            ).format(t=task_en)
        )
        head = (
            f"Вот простое решение:\n\n```python\n{code}\n```\n\nФункция проходит по данным "
            "один раз и возвращает результат."
            if lb == "ru"
            else f"Here is a simple solution:\n\n```python\n{code}\n```\n\nThe function walks "
            "through the input once and returns the result."
        )
        return _decorate(r, q, lu, _PROMPT_SUFFIXES[lu], p=0.6), head, task_en, ""
    # Template prompts about a subject.
    if lu == "uk":
        subject, subject_en = r.choice(topic.subjects_uk)
        q = _fill(r.choice(_UK_WRITING_PROMPTS if name == "writing" else _UK_PROMPTS), subject)
        head = ""
        if name == "cooking":
            head = "Вам знадобиться:\n- " + "\n- ".join(r.sample(_INGREDIENTS["uk"], 4))
        return _decorate(r, q, lu, _PROMPT_SUFFIXES[lu], p=0.6), head, subject_en, subject
    s_ru, s_en = r.choice(topic.subjects)
    templates = topic.prompts[lu]
    if name not in ("cooking", "writing", "entertainment") and r.random() < 0.5:
        templates = _GENERIC_PROMPTS[lu]  # their subjects are not in the nominative
    q = _fill(r.choice(templates), s_ru if lu == "ru" else s_en)
    head = ""
    if name == "cooking":
        lead = "Вам понадобится:" if lb == "ru" else "You will need:"
        head = f"{lead}\n- " + "\n- ".join(r.sample(_INGREDIENTS[lb], r.randint(3, 6)))
    return (
        _decorate(r, q, lu, _PROMPT_SUFFIXES[lu], p=0.6),
        head,
        s_en,
        s_ru if lb == "ru" else s_en,
    )


def _followup(
    r: random.Random, name: str, topic: Topic, lu: str, lb: str, subject: str, chars: int
) -> tuple[str, str]:
    """A later (user, bot) exchange: a new task for task topics, else a follow-up question."""
    if name == "inappropriate":
        pushes, answers = _PRESSURE.get(lu, _PRESSURE["en"])
        return r.choice(pushes), r.choice(_PRESSURE.get(lb, _PRESSURE["en"])[1])
    if topic.style == "task":
        q, a = _task(r, name, lu, lb)
        if name != "chit_chat":
            prefix = r.choice(_NEXT_TASK[lu])
            q = prefix + (q[:1].lower() + q[1:] if prefix else q)
        return q, _compose(r, lb, topic, "", chars, a, openers=("",))
    q = r.choice(_FOLLOWUPS[lu])
    if "{s2}" in q:
        others = (
            [p[0] for p in topic.subjects_uk]
            if lu == "uk"
            else [p[0] if lu == "ru" else p[1] for p in topic.subjects]
        )
        q = q.replace("{s2}", r.choice(others)) if others else _FOLLOWUPS[lu][0]
    return q, _compose(r, lb, topic, subject, chars, openers=_FOLLOWUP_OPENERS[lb])


def dialogue(
    r: random.Random,
    name: str,
    lu: str,
    lb: str,
    turns: int,
    system: bool,
    flag: str,
    flag_turn: int,
    reply_chars: np.ndarray,
) -> tuple[list[tuple[str, str]], str]:
    """One dialogue as (content, role) pairs, and its subject in English (for explanations).

    `flag` is "" or one of "selfref" / "refusal" / "hidden": what the bot does at bot turn
    `flag_turn` instead of (or before) answering.
    """
    topic = TOPICS[name]
    messages: list[tuple[str, str]] = []
    subject_en = ""
    if name == "roleplay":
        persona_system, user_lines, bot_lines = r.choice(_PERSONAS[lu])
        messages.append((persona_system, "system"))
        more = (
            (
                "А что было дальше?",
                "Расскажи подробнее!",
                "Ха-ха, а ещё?",
                "И что ты сделал?",
                "Серьёзно?",
                "Не верю!",
                "А потом?",
            )
            if lu == "ru"
            else ("And then what?", "Tell me more!", "Ha, what else?", "Really?")
        )
        for t in range(turns):
            if t == 0:
                line = r.choice(user_lines if r.random() < 0.7 else _RP_OPENERS[lu])
            else:
                line = r.choice(user_lines) if r.random() < 0.4 else r.choice(more)
            if t == 0 and r.random() < 0.6:
                line = f"{r.choice(_RP_GREETINGS[lu])} {line}"
            if r.random() < 0.4:
                line = f"{r.choice(_USER_DIRECTIONS[lu])} {line}"
            messages.append((line, "user"))
            n = max(1, min(len(bot_lines) - 1, int(reply_chars[t]) // 80))
            reply = " ".join(_take(r, bot_lines, n))
            if r.random() < 0.5:
                reply = f"{r.choice(_STAGE_DIRECTIONS[lu])} {reply}"
            messages.append((reply, "bot"))
    else:
        if system:
            messages.append((r.choice(_ASSISTANT_SYSTEMS[lb]), "system"))
        prompt, head, subject_en, subject_bot = _first_turn(r, name, topic, lu, lb)
        messages.append((prompt, "user"))
        messages.append((_compose(r, lb, topic, subject_bot, int(reply_chars[0]), head), "bot"))
        for t in range(1, turns):
            q, a = _followup(r, name, topic, lu, lb, subject_bot, int(reply_chars[t]))
            messages.append((q, "user"))
            messages.append((a, "bot"))
    if flag:
        idx = [i for i, (_, role) in enumerate(messages) if role == "bot"][flag_turn]
        content = messages[idx][0]
        if flag == "selfref":
            content = r.choice(_SELF_REFERENCES[lb]) + " " + content
        elif flag == "refusal":
            content = r.choice(_REFUSALS[lb])
        else:
            content = r.choice(_HIDDEN_REFUSALS[lb])
        messages[idx] = (content, "bot")
    return messages, subject_en
