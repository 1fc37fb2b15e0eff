select
    age_band,
    min_age,
    max_age,
    multiplier
from {{ ref('config_termination_hazard_age_multipliers') }}
