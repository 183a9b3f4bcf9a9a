"""Record accounting of a stage's result: records in = out + quarantined + duplicates, or the stage fails."""

from __future__ import annotations

import pytest

from goldsmith.errors import AccountingError
from goldsmith.jobs.context import TableResult


@pytest.mark.parametrize(("counts", "accounted"), [
    ({"records_in": 10, "records_out": 7, "quarantined": 2, "duplicates": 0}, 9),  # one record lost
    ({"records_in": 10, "records_out": 8, "quarantined": 2, "duplicates": 1}, 11),  # one record invented
])
def test_a_stage_result_whose_counts_do_not_add_up_fails(counts: dict[str, int], accounted: int) -> None:
    result = TableResult("refine", "silver.items", **counts)
    with pytest.raises(AccountingError) as raised:
        result.check_accounting()
    assert str(raised.value) == (
        f"silver.items: 10 records in but {counts['records_out']} out + {counts['quarantined']} quarantined + "
        f"{counts['duplicates']} duplicates = {accounted}; this is a goldsmith bug, please report it"
    )
    TableResult("refine", "silver.items", records_in=accounted, records_out=counts["records_out"],
                quarantined=counts["quarantined"], duplicates=counts["duplicates"]).check_accounting()
