select
    merit_base,
    merit_tenure_bump_value,
    merit_tenure_bump_max_years,
    merit_low_level_cutoff,
    merit_low_level_bump_value,
    promotion_raise
from {{ ref('config_raises_hazard') }}
