"""The suites the hub offers are the ones the library defines."""

from evals import SUITES
from evals.tasks import stock_task_names
from hub.jobs.presets import SUITES as OFFERED


def test_it_offers_the_web_form_exactly_the_librarys_suites():
    assert list(OFFERED) == list(SUITES)
    for suite in SUITES.values():
        assert suite.version and suite.description
        assert {t.name for t in suite.tasks} <= set(stock_task_names())
