"""Save-time checks, template folders, and the templates shipped with the examples."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from flowmail.templates.files import TemplateFileError, load_template_dir
from flowmail.templates.model import Template
from flowmail.templates.render import render_message
from flowmail.templates.validate import (
    SAMPLE_VARIABLES,
    Problem,
    TemplateInvalid,
    check_template,
    check_templates,
    validate_template,
)

ROOT = Path(__file__).resolve().parents[2]
ADDRESS = "1 Example Street, Springfield"
FOOT = '<p><a href="{{ unsubscribe_url }}">Unsubscribe</a> {{ postal_address }}</p>'


def problems(template: Template, address: str = ADDRESS) -> list[Problem]:
    return check_template(template, postal_address=address)


def one(template: Template) -> Problem:
    (problem,) = problems(template)
    return problem


def test_a_compliant_template_passes() -> None:
    assert problems(Template("ok", "Hi {{ contact.first_name }}", html=FOOT)) == []


# --- syntax, filters, limits ---------------------------------------------------------------


def test_a_syntax_error_names_its_part_and_line() -> None:
    problem = one(Template("t", "s", html="<p>a</p>\n<p>b</p>\n{% endif %}" + FOOT))
    assert (problem.part, problem.line) == ("html", 3)
    assert str(problem).startswith("t (html, line 3): syntax error: unexpected tag 'endif'")


def test_an_unclosed_block_names_the_line_it_opens_on() -> None:
    problem = one(Template("t", "s", html=FOOT + "\n<p>\n{% if contact.vip %}\nVIP\n</p>"))
    assert problem.line == 3
    assert "{% if %} is never closed" in problem.message


def test_a_broken_output_statement_is_found_by_line() -> None:
    problem = one(
        Template("t", "s", text="Hi\n\n{{ contact.first_name | }}\n{{ unsubscribe_url }}")
    )
    assert (problem.part, problem.line) == ("text", 3)


def test_a_subject_syntax_error_is_reported() -> None:
    problem = one(Template("t", "Hi {{ contact.first_name ", html=FOOT))
    assert problem.part == "subject" and "syntax error" in problem.message


def test_an_unknown_filter_is_refused_with_its_line() -> None:
    problem = one(Template("t", "s", html=FOOT + "\n\n<p>{{ contact.first_name | shout }}</p>"))
    assert (problem.part, problem.line, problem.message) == ("html", 3, "unknown filter 'shout'")


def test_an_unknown_filter_in_a_branch_never_taken_is_still_refused() -> None:
    template = Template("t", "s", text="{% if false %}{{ x | nope }}{% endif %}")
    assert one(replace_topic(template)).message == "unknown filter 'nope'"


def replace_topic(template: Template, topic: str = "transactional") -> Template:
    return Template(template.name, template.subject, template.html, template.text, topic=topic)


def test_a_runaway_loop_is_refused_at_save_time() -> None:
    template = Template(
        "t", "s", html=FOOT + "\n{% for i in (1..100000) %}\n<p>{{ i }}</p>{% endfor %}"
    )
    problem = one(template)
    assert (problem.part, problem.line) == ("html", 2)
    assert "loop iteration limit reached" in problem.message


def test_nested_loops_count_together() -> None:
    text = "{% for a in (1..200) %}{% for b in (1..200) %}.{% endfor %}{% endfor %}"
    assert "loop iteration limit" in one(replace_topic(Template("t", "s", text=text))).message


def test_a_runaway_output_is_refused_at_save_time() -> None:
    text = (
        "{% capture s %}{% for i in (1..1000) %}xxxxxxxxxx{% endfor %}{% endcapture %}"
        "{% for i in (1..1000) %}{{ s }}{% endfor %}"
    )
    assert "limit" in one(replace_topic(Template("t", "s", text=text))).message


def test_include_is_refused() -> None:
    problem = one(replace_topic(Template("t", "s", text="{% include 'footer' %}")))
    assert "footer" in problem.message


def test_a_filter_with_the_wrong_arguments_is_refused() -> None:
    problem = one(replace_topic(Template("t", "s", text="a\n{{ 'x' | upcase: 1, 2 }}")))
    assert problem.line == 2 and "argument" in problem.message


def test_data_dependent_errors_are_left_to_the_fallback() -> None:
    template = Template("t", "s", text="{{ 10 | divided_by: contact.kids }}")
    assert problems(replace_topic(template)) == []


# --- compliance ---------------------------------------------------------------------------


def test_marketing_without_an_unsubscribe_link_is_refused() -> None:
    problem = one(Template("promo", "s", html="<p>Buy! {{ postal_address }}</p>"))
    assert problem.part == "html"
    assert "needs an unsubscribe link: add {{ unsubscribe_url }}" in problem.message


def test_marketing_without_the_postal_address_is_refused() -> None:
    problem = one(Template("promo", "s", html='<a href="{{ unsubscribe_url }}">u</a>'))
    assert "postal address: add {{ postal_address }}" in problem.message


def test_the_literal_configured_address_is_accepted() -> None:
    html = '<a href="{{ unsubscribe_url }}">u</a><p>1 Example Street,\n  Springfield</p>'
    assert problems(Template("promo", "s", html=html)) == []


def test_both_parts_of_a_marketing_email_need_the_link_and_address() -> None:
    found = problems(Template("promo", "s", html=FOOT, text="Buy now!"))
    assert {(p.part, "unsubscribe" in p.message) for p in found} == {
        ("text", True),
        ("text", False),
    }


def test_marketing_is_refused_when_no_postal_address_is_configured() -> None:
    assert problems(Template("promo", "s", html=FOOT)) == []
    found = problems(Template("promo", "s", html=FOOT), address="")
    assert [p.message for p in found] == [
        "marketing emails must show the sender's postal address, and none is configured: "
        "set FLOWMAIL_POSTAL_ADDRESS (postal_address in flowmail.toml)"
    ]


def test_transactional_templates_need_neither() -> None:
    template = Template("receipt", "Your receipt", html="<p>Thanks</p>", topic="transactional")
    assert problems(template, address="") == []


def test_validate_raises_with_every_problem() -> None:
    with pytest.raises(TemplateInvalid) as caught:
        validate_template(Template("promo", "s", html="<p>Buy</p>"), postal_address=ADDRESS)
    assert len(caught.value.problems) == 2
    assert "promo (html): a marketing email" in str(caught.value)


def test_validate_compiles_mjml() -> None:
    mjml = (
        "<mjml><mj-body><mj-section><mj-column><mj-text>Hi "
        f"{FOOT}</mj-text></mj-column></mj-section></mj-body></mjml>"
    )
    saved = validate_template(Template("m", "s", mjml=mjml), postal_address=ADDRESS)
    assert saved.html is not None and "{{ unsubscribe_url }}" in saved.html
    with pytest.raises(TemplateInvalid, match="MJML"):
        validate_template(Template("m", "s", mjml="<mjml><mj-body>"), postal_address=ADDRESS)


def test_empty_subject_and_no_body_are_refused() -> None:
    assert "subject is empty" in one(Template("t", " ", html=FOOT)).message
    assert "needs HTML, MJML or text" in one(Template("t", "s")).message


def test_fallbacks_must_exist_and_not_be_the_template_itself() -> None:
    own = Template("a", "s", html=FOOT, fallback="a")
    assert "its own fallback" in one(own).message
    templates = {"b": Template("b", "s", html=FOOT, fallback="nowhere")}
    (problem,) = check_templates(templates, postal_address=ADDRESS)
    assert problem.message == "the fallback template 'nowhere' does not exist"
    assert check_templates(templates, postal_address=ADDRESS, known={"nowhere"}) == []


# --- folders ------------------------------------------------------------------------------


def write(folder: Path, name: str, meta: object, **bodies: str) -> None:
    (folder / f"{name}.yaml").write_text(
        yaml.safe_dump(meta) if not isinstance(meta, str) else meta
    )
    for suffix, body in bodies.items():
        (folder / f"{name}.{suffix}").write_text(body)


def test_a_folder_of_templates_loads(tmp_path: Path) -> None:
    write(
        tmp_path,
        "hello",
        {
            "subject": "Hi {{ contact.first_name }}",
            "topic": "onboarding",
            "defaults": {"contact": {"first_name": "there"}, "event.plan": "free"},
            "fallback": "plain",
        },
        html=FOOT,
        txt="Hi {{ unsubscribe_url }} {{ postal_address }}",
    )
    write(
        tmp_path, "plain", {"subject": "Hi"}, txt="Hello {{ unsubscribe_url }} {{ postal_address }}"
    )
    templates = load_template_dir(tmp_path)
    assert sorted(templates) == ["hello", "plain"]
    hello = templates["hello"]
    assert (hello.topic, hello.fallback, hello.html, hello.text) == (
        "onboarding",
        "plain",
        FOOT,
        "Hi {{ unsubscribe_url }} {{ postal_address }}",
    )
    assert hello.defaults == {"contact.first_name": "there", "event.plan": "free"}
    assert templates["plain"].topic == "marketing" and templates["plain"].html is None
    assert check_templates(templates, postal_address=ADDRESS) == []


def test_a_folder_compiles_mjml(tmp_path: Path) -> None:
    mjml = (
        "<mjml><mj-body><mj-section><mj-column><mj-text>Hi</mj-text></mj-column></mj-section>"
        "</mj-body></mjml>"
    )
    write(tmp_path, "m", {"subject": "s"}, mjml=mjml)
    template = load_template_dir(tmp_path)["m"]
    assert template.mjml == mjml and template.html is not None and "Hi" in template.html


def test_folder_problems_are_all_reported_with_their_files(tmp_path: Path) -> None:
    write(tmp_path, "nosubject", {"topic": "x"}, html="x")
    write(tmp_path, "unknown_key", {"subject": "s", "colour": "red"}, html="x")
    write(tmp_path, "nobody", {"subject": "s"})
    write(tmp_path, "both", {"subject": "s"}, html="x", mjml="<mjml></mjml>")
    write(tmp_path, "badyaml", "subject: [unclosed", html="x")
    write(tmp_path, "notamap", "- a list", html="x")
    (tmp_path / "orphan.html").write_text("<p>x</p>")
    with pytest.raises(TemplateFileError) as caught:
        load_template_dir(tmp_path)
    text = str(caught.value)
    for expected in (
        "nosubject.yaml: subject is missing",
        "unknown_key.yaml: unknown key 'colour'",
        "nobody.yaml: no nobody.html, nobody.txt or nobody.mjml",
        "both.yaml: give both.html or both.mjml, not both",
        "badyaml.yaml: not valid YAML",
        "notamap.yaml: must be a mapping",
        "orphan.html: no orphan.yaml beside it",
    ):
        assert expected in text, expected
    assert len(caught.value.problems) == 7


def test_a_missing_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(TemplateFileError, match="no such folder"):
        load_template_dir(tmp_path / "nope")


# --- the shipped templates ------------------------------------------------------------------


def shipped() -> dict[str, Template]:
    return load_template_dir(ROOT / "templates")


def test_every_shipped_template_validates() -> None:
    assert check_templates(shipped(), postal_address=ADDRESS) == []


def test_every_template_named_by_an_example_workflow_is_shipped() -> None:
    names = set()
    for path in (ROOT / "examples").glob("*.yaml"):
        document = yaml.safe_load(path.read_text())
        for step in document.get("steps", []) if isinstance(document, dict) else []:
            if isinstance(step, dict) and isinstance(step.get("email"), dict):
                names.add(step["email"].get("template"))
    names.discard(None)
    assert names and names <= set(shipped())


@pytest.mark.parametrize("name", sorted(shipped()))
def test_each_shipped_template_renders_with_sample_data(name: str) -> None:
    templates = shipped()
    template = templates[name]
    rendered = render_message(
        template,
        SAMPLE_VARIABLES,
        content="abandoned_cart" if name == "cart_reminder" else None,
        fallback=templates.get(template.fallback or ""),
    )
    assert rendered.fallback is None and rendered.template == name
    assert "https://flowmail.example/u/sample" in rendered.text
    assert "1 Sample Street" in rendered.text
    assert rendered.subject and "{{" not in rendered.subject + rendered.text
