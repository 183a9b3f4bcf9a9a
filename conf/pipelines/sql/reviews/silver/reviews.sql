-- silver.reviews: one row per review (key: review_id), text decoded and trimmed, date typed.
-- The source wraps each review in an extra pair of quotes and encodes punctuation as HTML entities;
-- a condition like '3</span> users found this comment helpful.' is a scraping artefact, not a condition.
with source as (
    select * from bronze_batch
),

cleaned as (
    select
        review_id,
        trim(drug_name) as drug_name,
        case
            when condition like '%</span>%' then null
            else nullif(trim(html_unescape(condition)), '')
        end as condition,
        trim(regexp_replace(html_unescape(review), '^[\\s"]+|[\\s"]+$', '')) as review_text,
        lower(trim(rating)) as sentiment,
        try_to_date(trim(review_date), 'MMMM d, yyyy') as review_date,
        useful_count,
        case when lower(element_at(split(_source_file, '/'), -1)) like '%test%' then 'test' else 'train' end
            as source_split,
        _source_file,
        _ingested_at,
        _batch_id
    from source
),

final as (
    select * from cleaned
)

select * from final
