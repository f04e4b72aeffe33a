<?php
/** What PDO says when the MySQL server (here: the JSON file) is not reachable. */
declare(strict_types=1);

namespace FakeMagento\Exception;

class DbConnectionException extends \RuntimeException
{
    public function __construct(string $path)
    {
        parent::__construct('SQLSTATE[HY000] [2002] No such file or directory (' . $path . ')');
    }

    public function magentoClass(): string
    {
        return 'Zend_Db_Adapter_Exception';
    }
}
